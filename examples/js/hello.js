// Hello in the CGI style: a classic script; Kiln.readInput() is the request
// body and console.log writes the response.
//   kiln deploy examples/js/hello.js && curl -d Kiln http://127.0.0.1:8080/fn/default/hello
console.log(`Hello, ${Kiln.readInput() || "world"}!`);
