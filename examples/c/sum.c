/* A small JSON API in C, in the CGI style (deploy with --cgi): POST a JSON
 * array of numbers, get their count and sum as JSON; anything else is a 400.
 *   clang-14 --target=wasm32-wasi -O2 -o sum.wasm examples/c/sum.c
 *   kiln deploy --cgi sum.wasm && curl -d '[1, 2, 39]' http://127.0.0.1:8080/fn/default/sum */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void answer(int status, const char *body) {
    printf("Status: %d\r\nContent-Type: application/json\r\n\r\n%s\n", status, body);
}

int main(void) {
    static char body[65536];
    size_t n = fread(body, 1, sizeof body - 1, stdin);
    body[n] = '\0';
    const char *p = body;
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    if (*p++ != '[') {
        answer(400, "{\"error\": \"expected a JSON array of numbers\"}");
        return 0;
    }
    double sum = 0;
    long count = 0;
    for (;;) {
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r' || *p == ',') p++;
        if (*p == ']') break;
        char *end;
        double x = strtod(p, &end);
        if (end == p) {
            answer(400, "{\"error\": \"expected a JSON array of numbers\"}");
            return 0;
        }
        sum += x;
        count++;
        p = end;
    }
    char out[128];
    snprintf(out, sizeof out, "{\"count\": %ld, \"sum\": %g}", count, sum);
    answer(200, out);
    return 0;
}
