# A small JSON API in the handler style: `handle(request)` returns a Response.
# Its top level (the parsing of the seed data) runs once, at deploy.
#   kiln deploy examples/python/todos.py
#   curl 'http://127.0.0.1:8080/fn/default/todos?done=false'
#   curl -d '{"title": "ship it"}' http://127.0.0.1:8080/fn/default/todos
import json

from kiln import Response

TODOS = json.loads('[{"id": 1, "title": "write the code", "done": true},'
                   ' {"id": 2, "title": "deploy it", "done": false}]')


def handle(request):
    if request.method == "POST":
        try:
            todo = request.json()
            title = str(todo["title"])
        except (ValueError, KeyError, TypeError):
            return Response.json({"error": "expected {\"title\": \"...\"}"}, status=400)
        # Each request starts from the snapshot: nothing is kept between requests.
        return Response.json({"id": len(TODOS) + 1, "title": title, "done": False}, status=201)
    done = request.query.get("done")
    todos = [t for t in TODOS if done is None or str(t["done"]).lower() == done]
    return Response.json({"todos": todos, "count": len(todos)})
