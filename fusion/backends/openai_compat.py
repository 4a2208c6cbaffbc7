"""Any OpenAI-compatible endpoint (``vllm serve``, ``transformers serve``, a hosted API) over httpx.

Requests run concurrently (at most ``max_concurrency`` in flight, at most ``requests_per_second`` started per
second), each retried with exponential backoff and jitter (tenacity; a server's ``Retry-After`` is honoured) on
HTTP 429, 5xx, timeouts and connection failures. A request that still fails, or whose answer cannot be read,
becomes a :class:`Generation` with ``error`` set: one bad request never loses the others.

Token counts are the server's ``usage`` when it returns them; otherwise the model's tokenizer counts them
(``options.tokenizer``, or the model reference when it is a local folder), and ``tokens_source`` says which.
The API key is read from the environment variable named by ``options.api_key_env``: it is never logged, never
stored in a row, a parameter or a tag.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fusion.backends.base import (
    BACKENDS,
    TOKENS_FROM_SERVER,
    TOKENS_FROM_TOKENIZER,
    Backend,
    Generation,
    Request,
)

logger = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class OpenAIOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(description="the API root, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str | None = Field(default=None, description="name of the environment variable holding the key")
    served_model: str | None = Field(default=None, description="the model name the server knows (default: model)")
    api: Literal["chat", "completions"] = "chat"
    max_concurrency: int = Field(default=32, gt=0)
    requests_per_second: float | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=4, ge=0)
    retry_initial_s: float = Field(default=1.0, ge=0)
    retry_max_s: float = Field(default=30.0, ge=0)
    tokenizer: str | None = Field(default=None, description="local tokenizer to count tokens without `usage`")
    part_size: int | None = Field(default=None, gt=0, description="requests per durable part (default: "
                                                                  "2 x max_concurrency)")
    prefill: bool = Field(default=False, description="send a request's prefill as a final assistant message to "
                                                     "continue (vLLM's continue_final_message); chat API only")


class RetryableError(Exception):
    """A failure worth another attempt (429, 5xx, timeout, connection)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestFailed(Exception):
    """A failure another attempt would not fix (4xx, an unreadable answer)."""


@BACKENDS.register("openai")
class OpenAIBackend(Backend):
    name = "openai"
    Options = OpenAIOptions
    identity_options = ("served_model", "api", "prefill")

    def __init__(self, spec, *, model_cache: str | Path, device: str = "cpu", dtype: str = "float32",
                 batch_size: int = 8) -> None:
        super().__init__(spec, model_cache=model_cache, device=device, dtype=dtype, batch_size=batch_size)
        o: OpenAIOptions = self.options
        self.url = o.base_url.rstrip("/") + ("/chat/completions" if o.api == "chat" else "/completions")
        self.served_model = o.served_model or spec.model
        self._headers = {"Content-Type": "application/json"}
        if o.api_key_env:
            key = os.environ.get(o.api_key_env)
            if not key:
                raise RuntimeError(f"pool[{spec.name}]: environment variable {o.api_key_env} (options.api_key_env) "
                                   "is not set")
            self._headers["Authorization"] = f"Bearer {key}"

    @classmethod
    def part_size_for(cls, options: OpenAIOptions, batch_size: int) -> int:
        return options.part_size or 2 * options.max_concurrency

    # ---- generation -----------------------------------------------------------------------------------------
    def generate(
        self, requests: Sequence[Request], *, max_new_tokens: int, temperature: float = 0.0, seed: int = 0
    ) -> list[Generation]:
        coro = self._generate_all(list(requests), max_new_tokens, temperature, seed)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        # called from inside an event loop (a notebook, an async flow): run ours on a thread of its own
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, coro).result()

    async def _generate_all(self, requests: list[Request], max_new_tokens: int, temperature: float,
                            seed: int) -> list[Generation]:
        import httpx
        from aiolimiter import AsyncLimiter

        o: OpenAIOptions = self.options
        sem = asyncio.Semaphore(o.max_concurrency)
        limiter = AsyncLimiter(o.requests_per_second, 1.0) if o.requests_per_second else None
        limits = httpx.Limits(max_connections=o.max_concurrency, max_keepalive_connections=o.max_concurrency)
        async with httpx.AsyncClient(timeout=o.timeout_s, limits=limits, headers=self._headers) as client:
            async def one(req: Request) -> Generation:
                async with sem:
                    return await self._one(client, limiter, req, max_new_tokens, temperature, seed)

            return list(await asyncio.gather(*(one(r) for r in requests)))

    def _sends_prefill(self, req: Request) -> bool:
        return bool(req.prefill) and self.options.prefill and self.options.api == "chat"

    def _body(self, req: Request, max_new_tokens: int, temperature: float, seed: int) -> dict:
        body = {"model": self.served_model, "max_tokens": max_new_tokens, "temperature": temperature, "seed": seed}
        if self.options.api == "completions":
            body["prompt"] = req.prompt
            return body
        body["messages"] = [{"role": "user", "content": req.prompt}]
        if self._sends_prefill(req):
            body["messages"].append({"role": "assistant", "content": req.prefill})
            body.update(continue_final_message=True, add_generation_prompt=False)
        return body

    async def _one(self, client, limiter, req: Request, max_new_tokens: int, temperature: float,
                   seed: int) -> Generation:
        from tenacity import (
            AsyncRetrying,
            retry_if_exception_type,
            stop_after_attempt,
            wait_exponential_jitter,
        )

        o: OpenAIOptions = self.options
        backoff = wait_exponential_jitter(initial=o.retry_initial_s, max=o.retry_max_s)

        def wait(state) -> float:
            exc = state.outcome.exception() if state.outcome else None
            after = getattr(exc, "retry_after", None) or 0.0
            return max(min(after, o.retry_max_s), backoff(state))

        body = self._body(req, max_new_tokens, temperature, seed)
        t0 = time.perf_counter()
        attempts = 0
        try:
            async for attempt in AsyncRetrying(stop=stop_after_attempt(o.max_retries + 1), wait=wait,
                                               retry=retry_if_exception_type(RetryableError), reraise=True):
                with attempt:
                    attempts += 1
                    if limiter is not None:
                        await limiter.acquire()
                    data = await self._post(client, body)
        except RetryableError as exc:
            return Generation.failed(f"{exc} (after {attempts} attempts)", time.perf_counter() - t0)
        except RequestFailed as exc:
            return Generation.failed(str(exc), time.perf_counter() - t0)
        latency = time.perf_counter() - t0
        try:
            text = self._text(data)
            if self._sends_prefill(req) and not text.startswith(req.prefill.strip()):
                text = f"{req.prefill.strip()} {text}"
        except (KeyError, IndexError, TypeError) as exc:
            return Generation.failed(f"malformed response: no answer text ({type(exc).__name__}: {exc})", latency)
        usage = data.get("usage") if isinstance(data, dict) else None
        if isinstance(usage, dict) and usage.get("prompt_tokens") is not None \
                and usage.get("completion_tokens") is not None:
            return Generation(text, int(usage["prompt_tokens"]), int(usage["completion_tokens"]), latency,
                              tokens_source=TOKENS_FROM_SERVER)
        n_in, n_out, source = self._count(req.prompt, text)
        return Generation(text, n_in, n_out, latency, tokens_source=source)

    async def _post(self, client, body: dict) -> dict:
        import httpx

        try:
            resp = await client.post(self.url, json=body)
        except httpx.TimeoutException as exc:
            raise RetryableError(f"timeout: {type(exc).__name__}") from None
        except httpx.TransportError as exc:  # refused, reset, DNS: the endpoint is down or unreachable
            raise RetryableError(f"connection failed: {type(exc).__name__}: {exc}") from None
        if resp.status_code in RETRY_STATUS:
            raise RetryableError(f"http {resp.status_code}: {_short(resp.text)}", _retry_after(resp))
        if resp.status_code >= 400:
            raise RequestFailed(f"http {resp.status_code}: {_short(resp.text)}")
        try:
            return resp.json()
        except ValueError:
            raise RequestFailed(f"malformed response: not JSON ({_short(resp.text)!r})") from None

    def _text(self, data: dict) -> str:
        choice = data["choices"][0]
        text = choice["message"]["content"] if self.options.api == "chat" else choice["text"]
        if not isinstance(text, str):
            raise TypeError(f"answer text is {type(text).__name__}")
        return text.strip()

    # ---- token counting without `usage` ---------------------------------------------------------------------
    @cached_property
    def _tokenizer(self):
        from fusion.models.refs import resolve_ref

        ref = self.options.tokenizer or self.spec.model
        try:
            path = resolve_ref(ref)
        except FileNotFoundError:
            return None
        if not Path(path).is_dir():
            return None
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as exc:
            logger.warning("no tokenizer at %s to count tokens (%s)", path, exc)
            return None

    def _count(self, prompt: str, text: str) -> tuple[int | None, int | None, str | None]:
        tok = self._tokenizer
        if tok is None:
            return None, None, None
        if self.options.api == "chat" and tok.chat_template:
            ids = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=True,
                                          add_generation_prompt=True)
            n_in = len(ids["input_ids"] if isinstance(ids, dict) else ids)
        else:
            n_in = len(tok(prompt, add_special_tokens=False)["input_ids"])
        return n_in, len(tok(text, add_special_tokens=False)["input_ids"]), TOKENS_FROM_TOKENIZER


def _short(text: str, n: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n] + "…"


def _retry_after(resp) -> float | None:
    try:
        return float(resp.headers.get("retry-after", ""))
    except ValueError:
        return None
