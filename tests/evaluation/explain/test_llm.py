"""The chat-completions client and the LLM judge against a local HTTP server (loopback only)."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sae_lens_match.evaluation.explain import (
    ChatClient,
    ChatConfigError,
    ChatHTTPError,
    ChatResponseError,
    ChatUnreachableError,
    Example,
    Explanation,
    FeatureContexts,
    LLMExplainer,
    LLMJudge,
    parse_label,
)


def completion(content) -> bytes:
    """A real chat-completions response body, as OpenAI-compatible servers send it."""
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "test-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
    ).encode()


class Server:
    """Serves queued ``(status, body)`` answers to POST /v1/chat/completions and records requests."""

    def __init__(self):
        self.answers: list[tuple[int, bytes]] = []
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": json.loads(self.rfile.read(length))})
                status, body = server.answers.pop(0) if server.answers else (200, completion("SAME"))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def client(server, **kw):
    kw.setdefault("sleep", lambda s: None)
    kw.setdefault("timeout", 5)
    return ChatClient(server.url, "test-model", **kw)


MESSAGES = [{"role": "user", "content": "hello"}]


def test_valid_answer_and_request_shape(server):
    server.answers.append((200, completion("a feature about praise")))
    c = client(server, api_key="sk-test")
    assert c.complete(MESSAGES, temperature=0.0) == "a feature about praise"
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test"
    assert request["body"] == {"model": "test-model", "messages": MESSAGES, "temperature": 0.0}


def test_retries_server_errors_then_succeeds(server):
    waits = []
    server.answers += [(500, b'{"error": "busy"}'), (429, b"slow down"), (200, completion("ok"))]
    assert client(server, backoff=0.5, sleep=waits.append).complete(MESSAGES) == "ok"
    assert len(server.requests) == 3 and waits == [0.5, 1.0]  # exponential backoff


def test_client_errors_are_not_retried(server):
    server.answers.append((401, b'{"error": {"message": "bad key"}}'))
    with pytest.raises(ChatHTTPError, match="HTTP 401.*bad key") as info:
        client(server).complete(MESSAGES)
    assert info.value.status == 401 and len(server.requests) == 1


@pytest.mark.parametrize(
    "body, message",
    [
        (b"<html>oops</html>", "did not answer JSON"),
        (json.dumps({"choices": []}).encode(), "without choices"),
        (json.dumps({"choices": [{"message": {"role": "assistant"}}]}).encode(), "without choices"),
        (json.dumps({"choices": [{"message": {"content": None}}]}).encode(), "non-text"),
    ],
)
def test_malformed_responses_raise_after_retries(server, body, message):
    server.answers += [(200, body)] * 2
    with pytest.raises(ChatResponseError, match=message):
        client(server, max_retries=1).complete(MESSAGES)
    assert len(server.requests) == 2


def test_a_malformed_answer_is_retried(server):
    server.answers += [(200, b"{not json"), (200, completion("fine"))]
    assert client(server).complete(MESSAGES) == "fine"


def test_cache_answers_on_disk(server, tmp_path):
    server.answers.append((200, completion("cached answer")))
    first = client(server, cache_dir=tmp_path)
    assert first.complete(MESSAGES) == "cached answer"
    again = client(server, cache_dir=tmp_path)
    assert again.complete(MESSAGES) == "cached answer" and again.n_requests == 0
    assert len(server.requests) == 1
    assert len(list(tmp_path.rglob("*.json"))) == 1 and not list(tmp_path.rglob("*.tmp"))
    # other messages, model or parameters are other keys
    assert again.complete(MESSAGES, temperature=1.0) == "SAME" and len(server.requests) == 2
    # a damaged entry is a miss, not a crash
    for path in tmp_path.rglob("*.json"):
        path.write_text("{broken")
    assert client(server, cache_dir=tmp_path).complete(MESSAGES) == "SAME"


def test_the_api_key_never_appears_in_errors_or_answers(server, tmp_path):
    """A server that echoes the request's headers must not carry the key into a message or a file."""
    key = "sk-secret-123"
    server.answers.append((401, json.dumps({"error": "bad header Authorization: Bearer " + key}).encode()))
    with pytest.raises(ChatHTTPError) as info:
        client(server, api_key=key).complete(MESSAGES)
    assert key not in str(info.value) and "[redacted]" in str(info.value)
    server.answers.append((200, b"<html>Authorization: Bearer " + key.encode() + b"</html>"))
    with pytest.raises(ChatResponseError) as info:
        client(server, api_key=key, max_retries=0).complete(MESSAGES)
    assert key not in str(info.value)
    server.answers.append((200, completion(f"your key is {key}")))
    answer = client(server, api_key=key, cache_dir=tmp_path).complete(MESSAGES)
    assert key not in answer
    assert all(key not in f.read_text() for f in tmp_path.rglob("*.json"))


def test_unreachable_endpoint_fails_clearly():
    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = ChatClient(f"http://127.0.0.1:{port}/v1", "m", max_retries=2, timeout=2, sleep=lambda s: None)
    with pytest.raises(ChatUnreachableError, match=r"Cannot reach the chat endpoint .*gave up after 3 attempts") as info:
        c.complete(MESSAGES)
    assert isinstance(info.value, RuntimeError) and c.n_requests == 3


def test_configuration_from_the_environment(monkeypatch, server):
    for var in ("SAE_LENS_MATCH_LLM_BASE_URL", "OPENAI_BASE_URL", "SAE_LENS_MATCH_LLM_MODEL", "OPENAI_MODEL", "SAE_LENS_MATCH_LLM_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ChatConfigError, match="base URL and a model"):
        ChatClient()
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/")
    monkeypatch.setenv("SAE_LENS_MATCH_LLM_MODEL", "env-model")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    c = ChatClient(sleep=lambda s: None)
    assert (c.base_url, c.model, c.api_key) == (server.url, "env-model", "sk-env")
    c.complete(MESSAGES)
    assert server.requests[0]["auth"] == "Bearer sk-env" and server.requests[0]["body"]["model"] == "env-model"
    with pytest.raises(ValueError, match="role"):
        c.complete([{"content": "x"}])


@pytest.mark.parametrize(
    "text, label",
    [
        ('{"label": "SAME", "reason": "both praise films"}', "SAME"),
        ('```json\n{"label": "maybe", "reason": "related"}\n```', "MAYBE"),
        ("Answer: DIFFERENT. One is about negation.", "DIFFERENT"),
        ('Sure! {"label": "DIFFERENT"} is my answer', "DIFFERENT"),
        ("They are the same or maybe different", None),
        ("I cannot tell.", None),
        ('{"label": "SIMILAR"}', None),
    ],
)
def test_parse_label(text, label):
    assert parse_label(text)[0] == label


def _contexts(feature):
    example = Example(0, 3, 2.5, ("the", " film", " was", " great"), (0.0, 0.0, 0.1, 2.5), (1, 2, 3, 4), 3)
    return FeatureContexts("blocks.0.hook_resid_post", feature, (example,), 0.02, 500)


def test_llm_judge_parses_real_answers_and_survives_malformed_ones(server):
    judge = LLMJudge(client(server, max_retries=0))
    a, b = _contexts(0), _contexts(1)
    ea, eb = Explanation("praise for films", "llm:test-model"), Explanation("positive adjectives", "llm:test-model")
    server.answers += [
        (200, completion('{"label": "MAYBE", "reason": "overlapping"}')),
        (200, completion("no idea")),
        (200, b"garbage"),
        (503, b"down"),
    ]
    verdicts = [judge.judge(a, b, ea, eb) for _ in range(4)]
    assert (verdicts[0].label, verdicts[0].reason, verdicts[0].source) == ("MAYBE", "overlapping", "llm:test-model")
    assert "Feature A: praise for films\nFeature B: positive adjectives" in server.requests[0]["body"]["messages"][1]["content"]
    assert verdicts[1].label is None and "unparseable" in verdicts[1].error and verdicts[1].raw == "no idea"
    assert verdicts[2].label is None and "ChatResponseError" in verdicts[2].error
    assert verdicts[3].label is None and "HTTP 503" in verdicts[3].error
    with pytest.raises(ValueError, match="explanation"):
        judge.judge(a, b)


def test_llm_explainer_sends_marked_contexts(server):
    server.answers.append((200, completion("  Fires on positive adjectives about films.\n")))
    explanation = LLMExplainer(client(server)).explain(_contexts(0))
    assert explanation == Explanation("Fires on positive adjectives about films.", "llm:test-model")
    prompt = server.requests[0]["body"]["messages"][1]["content"]
    assert "the film was<< great>>" in prompt and "2.00% of tokens" in prompt
    assert LLMExplainer(client(server)).explain(FeatureContexts("x", 1, (), 0.0, 10)).text == "never fires on this data"
