"""The static files' middleware: WhiteNoise's, made async-capable.

WhiteNoise's middleware is sync-only; Django then runs every middleware outside it, and the
view, in a thread: an async view behind it would wait in that thread. The lookup of a static
file is a dictionary read (the files are listed at start), so the async path looks it up on the
event loop and only a file it serves goes to a thread.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any = None, **kwargs: Any) -> None:
        super().__init__(get_response, **kwargs)
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        if self.autorefresh:  # DEBUG: looks on disk
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            response: HttpResponse = await sync_to_async(self.serve)(static_file, request)
            return response
        answer: HttpResponse = await self.get_response(request)
        return answer
