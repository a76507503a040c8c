/* Counts its requests: adds one to `hits` (or to the key the request path
 * names) in the bucket `counter`, and prints the total. A WASI preview 1
 * program importing Kiln's `kiln_kv` host module: no SDK, no library.
 *
 *   clang-14 --target=wasm32-wasi -O2 -o counter.wasm counter.c
 *   kiln deploy counter.wasm --kv counter
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KILN_KV(name) __attribute__((import_module("kiln_kv"), import_name(#name)))

KILN_KV(open) int32_t kv_open(const char *name, int32_t name_len);
KILN_KV(increment) int64_t kv_increment(int32_t bucket, const char *key, int32_t key_len,
                                        int64_t delta);
KILN_KV(error) int32_t kv_error(char *buf, int32_t cap);

static void fail(const char *what) {
    char message[512];
    int32_t len = kv_error(message, sizeof message);
    if (len < 0) len = 0;
    if (len > (int32_t)sizeof message) len = sizeof message;
    fprintf(stderr, "%s: %.*s\n", what, (int)len, message);
    exit(1);
}

int main(void) {
    const char *path = getenv("PATH_INFO");
    while (path && *path == '/') path++;
    const char *key = (path && *path) ? path : "hits";
    size_t key_len = strlen(key);
    while (key_len > 0 && key[key_len - 1] == '/') key_len--;

    int32_t bucket = kv_open("counter", 7);
    if (bucket < 0) fail("cannot open bucket counter");
    int64_t total = kv_increment(bucket, key, (int32_t)key_len, 1);
    if (total < 0) fail("cannot increment");
    printf("%lld\n", (long long)total);
    return 0;
}
