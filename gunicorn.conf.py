"""Gunicorn settings for the upload service.

Run as ``gunicorn -c gunicorn.conf.py 'service:create_app()'`` from the project root.

Every value comes from ``lab.config.Settings`` (the LAB_* environment variables).
"""

import os

from lab.config import Settings

_settings = Settings.from_env()

# A Unix socket for nginx (no TCP stack between them), plus TCP for development and
# health checks. LAB_SOCKET empty: TCP only.
bind = [f"{_settings.host}:{_settings.port}"]
if _settings.socket:
    bind.insert(0, f"unix:{_settings.socket}")
# gunicorn >= 25.1's control socket (gunicornc) lives next to the app's socket, never at
# the shared default (~/.gunicorn/gunicorn.ctl), where concurrent instances would collide.
if _settings.socket:
    control_socket = f"{_settings.socket}.ctl"
else:
    control_socket_disable = True
# The socket is created world-connectable (umask 0): nginx runs as another user (in
# compose, in another container). Access is controlled by the socket's directory, which
# only the service and nginx share.
umask = 0

# Worker class: gthread. An upload is long and I/O bound: the worker mostly waits on the
# client's socket (nginx streams the body unbuffered) and on PostgreSQL. A sync worker is
# tied up for the whole upload by one slow client; gthread keeps that wait on one thread
# while the worker's other threads and its heartbeat carry on, without the monkey-patching
# of gevent/eventlet that psycopg would need. Threads share the worker's connection pool
# (LAB_POOL_SIZE, the same default of 4).
worker_class = "gthread"
# The database does the heavy lifting; one process per core keeps Python's own share of
# CPU (multipart parsing, hashing) on every core, the threads cover the waiting.
# Cores this process may run on (a container's cpuset), not the host's total.
workers = _settings.workers or len(os.sched_getaffinity(0))
threads = _settings.threads

# A worker that misses its heartbeat this long is restarted. gthread heartbeats from the
# main thread, so a long upload does not trip it; this catches a stuck process.
timeout = 120
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then (bounded memory drift); the jitter keeps them from all
# restarting together.
max_requests = 1000
max_requests_jitter = 100

# Access log to stdout; errors (startup, worker deaths) to stderr.
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level.lower()
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
# The app (and its pool) is built in each worker, after the fork.
preload_app = False
