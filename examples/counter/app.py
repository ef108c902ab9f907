"""The counter example's web app: every request adds one to the Redis counter `hits`.

Run as `python3 /app/app.py` (what the image and compose.yaml do): it serves on
0.0.0.0:5000 and finds Redis at $REDIS_HOST (default `redis`, the link's alias).
"""

import os
import socket
import time

import redis
from flask import Flask

app = Flask(__name__)
cache = redis.Redis(
    host=os.environ.get("REDIS_HOST", "redis"),
    port=6379,
    socket_connect_timeout=2,
    socket_timeout=2,
)


def hit_count():
    """Adds one to `hits`; Redis may still be starting (berth starts both services at
    once), so a failed connection is tried again a few times, as in Compose's example."""
    retries = 5
    while True:
        try:
            return cache.incr("hits")
        except redis.exceptions.ConnectionError:
            if retries == 0:
                raise
            retries -= 1
            time.sleep(0.5)


@app.route("/")
def hello():
    try:
        count = hit_count()
    except redis.exceptions.RedisError as err:
        return f"Redis is not reachable: {err}\n", 503, {"Content-Type": "text/plain"}
    return (
        f"Hello from {socket.gethostname()}! I have been seen {count} times.\n",
        200,
        {"Content-Type": "text/plain"},
    )


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
