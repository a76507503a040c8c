// A small JSON API in the handler style of Workers: export default { fetch }.
// Its top level runs once, at deploy.
//   kiln deploy examples/js/todos.js
//   curl 'http://127.0.0.1:8080/fn/default/todos?done=false'
//   curl -d '{"title": "ship it"}' http://127.0.0.1:8080/fn/default/todos
const TODOS = [
  { id: 1, title: "write the code", done: true },
  { id: 2, title: "deploy it", done: false },
];

export default {
  async fetch(request) {
    if (request.method === "POST") {
      let todo;
      try {
        todo = await request.json();
      } catch {
        return Response.json({ error: 'expected {"title": "..."}' }, { status: 400 });
      }
      if (typeof todo?.title !== "string") {
        return Response.json({ error: 'expected {"title": "..."}' }, { status: 400 });
      }
      // Each request starts from the snapshot: nothing is kept between requests.
      return Response.json({ id: TODOS.length + 1, title: todo.title, done: false }, { status: 201 });
    }
    const done = new URL(request.url).searchParams.get("done");
    const todos = TODOS.filter((t) => done === null || String(t.done) === done);
    return Response.json({ todos, count: todos.length });
  },
};
