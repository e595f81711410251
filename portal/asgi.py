"""The web's ASGI application: sync views on a pool of threads, async views on the event loop.

Django's own ASGI handler runs a sync view through its middleware in several hops between the
event loop and a thread made for each request, and a sync-only middleware turns the whole chain
sync, so that an async view then waits in a thread (asgiref's ``async_to_sync``). Measured
(``docs/benchmarks.md``, "Web reads"), it served a half or less of the reads a second of the
same views under gunicorn's threads. This handler splits the two kinds of view:

- a request for a **sync view** (nearly all: pages, the API, the forward-auth, the probes) runs
  in one hop on a pool of ``WEB_THREADS`` threads, through the sync middleware chain, exactly
  as Django's WSGI handler runs it: one request at a time per thread, and Django's connections
  are the thread's, as under gunicorn's threads (kept, or taken from ``DATABASE_POOL_SIZE``'s
  pool);
- a request for an **async view** (the waiting views of ``sessions_app.live``) runs on the event
  loop through Django's async chain, in which every middleware is async-capable: it waits on a
  coroutine, holding no thread. An async view may carry ``waits(request) -> bool``: a request it
  answers at once (the long poll's URL without ``?wait``) then takes the sync path, where its
  ``sync_view`` (what the async view would call for it) answers it directly.

Measured CPU per read, latencies and the choice of server: ``docs/benchmarks.md``, "Web reads".
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import django
from asgiref.sync import SyncToAsync, iscoroutinefunction
from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, ASGIRequest, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.http import HttpResponseBase
from django.urls import Resolver404, get_resolver, set_script_prefix

from portal.private_files import set_private_umask

Scope = dict[str, Any]


class PortalAsgiHandler(ASGIHandler):
    """Django's ASGI handler, with sync views answered in one hop on a thread pool."""

    def __init__(self, threads: int) -> None:
        super().__init__()  # the async chain, for async views
        self.sync_chain = _SyncChain()
        self.sync_chain.load_middleware(is_async=False)
        self.thread_count = threads
        self._threads: ThreadPoolExecutor | None = None  # made on the server's event loop

    def threads(self) -> ThreadPoolExecutor:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(
                self.thread_count,
                thread_name_prefix="web",
                initializer=_on_loop,
                initargs=(asyncio.get_running_loop(),),
            )
        return self._threads

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # lifespan: nothing to start or stop
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
                return
            raise ValueError(f"The portal serves HTTP only, not {scope['type']}.")
        try:
            body = await self.read_body(receive)
        except RequestAborted:
            return
        request, error = self.create_request(scope, body)
        if request is not None and self._waits(request):
            # Not in a ThreadSensitiveContext (Django's __call__ opens one): that would give
            # the request a thread of its own for its sync steps, idle while it waits. Without
            # it, those steps (a few milliseconds each) take turns on one thread per process.
            body.seek(0)
            try:
                await self.handle(scope, _replay(body, receive), send)
            finally:
                body.close()
            return
        loop = asyncio.get_running_loop()
        # run_in_executor, not sync_to_async: the thread's context (Django's connections, the
        # active language) stays the thread's, as under a WSGI server's threads.
        respond = functools.partial(self._respond, scope, request, error)
        response = await loop.run_in_executor(self.threads(), respond)
        try:
            await self.send_response(response, send)
        finally:
            if response.streaming:
                await loop.run_in_executor(self.threads(), response.close)
            body.close()

    def _waits(self, request: ASGIRequest) -> bool:
        """Whether the request is for an async view that will wait (see the module's doc)."""
        view = _view_for(request.path_info)
        if view is None:
            return False
        waits = getattr(view, "waits", None)
        return bool(waits(request)) if callable(waits) else True

    def _respond(
        self, scope: Scope, request: ASGIRequest | None, error: HttpResponseBase | None
    ) -> HttpResponseBase:
        """What Django's WSGI handler does with a request, in a thread of the pool."""
        from django.core import signals

        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        response = error if request is None else self.sync_chain.get_response(request)
        assert response is not None
        response._handler_class = self.__class__  # type: ignore[attr-defined]
        if not response.streaming:
            # The body is rendered: close now (request_finished gives back the database
            # connection) rather than hop to a thread again after sending.
            response.close()
        return response


class _SyncChain(BaseHandler):
    """Django's sync chain, which calls an async view's ``sync_view`` (what the view does with
    a request that does not wait) itself, rather than the async view through asgiref's
    ``async_to_sync`` and back to a thread (two trips through the event loop)."""

    def resolve_request(self, request: Any) -> Any:
        match = BaseHandler.resolve_request(self, request)  # also grafted (bench/web_reads.py)
        sync_view = getattr(match.func, "sync_view", None)
        if sync_view is not None:
            match.func = sync_view
        return match


def _on_loop(loop: asyncio.AbstractEventLoop) -> None:
    """A pool thread's ``async_to_sync`` (an async view that answers at once, adapted by the
    sync chain) runs its coroutine on the server's event loop, as from one of asgiref's own
    threads, rather than on a new event loop in a new thread for each call."""
    SyncToAsync.threadlocal.main_event_loop = loop
    SyncToAsync.threadlocal.main_event_loop_pid = os.getpid()


@functools.lru_cache(maxsize=4096)
def _async_view_at(urlconf: str, path: str) -> Any:
    try:
        view = get_resolver(urlconf).resolve(path).func
    except Resolver404:
        return None
    return view if iscoroutinefunction(view) else None


def _view_for(path: str) -> Any:
    """The async view at ``path``, or None (a sync view, or no view: a static file, a 404)."""
    return _async_view_at(settings.ROOT_URLCONF, path)


def _replay(body: Any, receive: Any) -> Any:
    """``receive`` for Django's handler, the body already read: it is given again once, then
    the messages that follow (a disconnect) come from the server."""
    sent = False

    async def replayed() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body.read(), "more_body": False}
        message: dict[str, Any] = await receive()
        return message

    return replayed


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
# The web server's files (uploads, caches) are the portal's alone, however it was started.
set_private_umask()
django.setup(set_prefix=False)  # as Django's get_asgi_application() does
application = PortalAsgiHandler(settings.WEB_THREADS)
# What is loaded by now (Django, the apps, DRF) lives as long as the process: the collector need
# not walk it at every full collection, pauses that showed in the reads' p99.
gc.collect()
gc.freeze()
