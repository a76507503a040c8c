/* Hello in C: the request body on stdin, the response on stdout.
 *   clang-14 --target=wasm32-wasi -O2 -o hello.wasm examples/c/hello.c
 *   kiln deploy hello.wasm && curl -d Kiln http://127.0.0.1:8080/fn/default/hello */
#include <stdio.h>
#include <string.h>

int main(void) {
    char name[256];
    size_t n = fread(name, 1, sizeof name - 1, stdin);
    name[n] = '\0';
    printf("Hello, %s!\n", n ? name : "world");
    return 0;
}
