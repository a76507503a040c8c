//! Guests the HTTP benchmarks deploy: distinct copies of a real guest, thousands of
//! tiny generated functions, and one very large generated module.

use wasm_encoder::{
    CodeSection, ConstExpr, CustomSection, DataSection, EntityType, ExportKind, ExportSection,
    Function, FunctionSection, ImportSection, Instruction, MemorySection, MemoryType, Module,
    TypeSection, ValType,
};

/// `wasm` with a custom section naming `n` appended: the same program with its own
/// bytes (so its own digest, blob and compile), as if rebuilt with a new build id.
pub(super) fn variant(wasm: &[u8], n: u64) -> Vec<u8> {
    let mut out = wasm.to_vec();
    let data = n.to_le_bytes();
    let section = CustomSection {
        name: "kiln-bench-variant".into(),
        data: (&data[..]).into(),
    };
    wasm_encoder::Section::append_to(&section, &mut out);
    out
}

/// A small WASI command that prints `function {n}\n`: distinct bytes for every `n`.
pub(super) fn tiny(n: u64) -> Vec<u8> {
    let text = format!("function {n}\n");
    let wat = format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "{}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const {}))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
        text.escape_default(),
        text.len()
    );
    wat::parse_str(wat).expect("generated WAT is valid")
}

/// What [`tiny`]`(n)` prints.
pub(super) fn tiny_output(n: u64) -> Vec<u8> {
    format!("function {n}\n").into_bytes()
}

/// What [`big`] prints.
pub(super) const BIG_OUTPUT: &[u8] = b"a big module says hello\n";

/// A WASI command of at least `min_bytes`: thousands of functions of straight-line
/// integer arithmetic (about 1 KiB of code each, all different, as many as it takes), and a `_start` that
/// calls one of them and prints [`BIG_OUTPUT`]. Compiling it is real work for every
/// function; running it is quick.
pub(super) fn big(min_bytes: usize) -> Vec<u8> {
    const OPS_PER_FUNCTION: u32 = 160;
    let mut bodies = Vec::new();
    let mut size = 0;
    let mut seed: u32 = 0x9e37_79b9;
    while size < min_bytes {
        let mut body = Function::new([]);
        body.instruction(&Instruction::LocalGet(0));
        for op in 0..OPS_PER_FUNCTION {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            body.instruction(&Instruction::I32Const((seed >> 8) as i32));
            body.instruction(&match op % 4 {
                0 => Instruction::I32Add,
                1 => Instruction::I32Mul,
                2 => Instruction::I32Xor,
                _ => Instruction::I32Rotl,
            });
        }
        body.instruction(&Instruction::End);
        size += body.byte_len();
        bodies.push(body);
    }

    let mut types = TypeSection::new();
    types.ty().function(
        [ValType::I32, ValType::I32, ValType::I32, ValType::I32],
        [ValType::I32],
    );
    types.ty().function([], []);
    types.ty().function([ValType::I32], [ValType::I32]);
    let mut imports = ImportSection::new();
    imports.import(
        "wasi_snapshot_preview1",
        "fd_write",
        EntityType::Function(0),
    );

    let mut funcs = FunctionSection::new();
    funcs.function(1); // _start, function index 1 (after the import)
    for _ in &bodies {
        funcs.function(2);
    }
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut exports = ExportSection::new();
    exports.export("memory", ExportKind::Memory, 0);
    exports.export("_start", ExportKind::Func, 1);

    let store = Instruction::I32Store(wasm_encoder::MemArg {
        offset: 0,
        align: 2,
        memory_index: 0,
    });
    let mut code = CodeSection::new();
    let mut start = Function::new([]);
    start
        .instruction(&Instruction::I32Const(7))
        .instruction(&Instruction::Call(2))
        .instruction(&Instruction::Drop)
        .instruction(&Instruction::I32Const(0))
        .instruction(&Instruction::I32Const(16))
        .instruction(&store)
        .instruction(&Instruction::I32Const(4))
        .instruction(&Instruction::I32Const(BIG_OUTPUT.len() as i32))
        .instruction(&store)
        .instruction(&Instruction::I32Const(1))
        .instruction(&Instruction::I32Const(0))
        .instruction(&Instruction::I32Const(1))
        .instruction(&Instruction::I32Const(8))
        .instruction(&Instruction::Call(0))
        .instruction(&Instruction::Drop)
        .instruction(&Instruction::End);
    code.function(&start);
    for body in &bodies {
        code.function(body);
    }
    let mut data = DataSection::new();
    data.active(0, &ConstExpr::i32_const(16), BIG_OUTPUT.iter().copied());

    let mut module = Module::new();
    module
        .section(&types)
        .section(&imports)
        .section(&funcs)
        .section(&memories)
        .section(&exports)
        .section(&code)
        .section(&data);
    module.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_modules_are_valid_and_distinct() {
        let validate = |wasm: &[u8]| wasmparser::Validator::new().validate_all(wasm).unwrap();
        validate(&tiny(1));
        assert_ne!(tiny(1), tiny(2));
        let big = big(100_000);
        assert!(big.len() >= 100_000);
        validate(&big);
        let base = tiny(3);
        assert_ne!(variant(&base, 1), variant(&base, 2));
        validate(&variant(&base, 1));
    }
}
