from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from kami_web.errors import ApiError, install_error_handlers
from kami_web.limits import BodySizeLimit, NulInUrlRefused

JSON = {"content-type": "application/json"}


class Body(BaseModel):
    quantity: int = Field(ge=1, le=100)


def make_client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/orders")
    async def place(body: Body) -> dict[str, int]:
        if body.quantity == 13:
            raise ApiError(409, "offer_delisted", "The offer is no longer listed.")
        return {"quantity": body.quantity}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal detail")

    return TestClient(app, raise_server_exceptions=False)


def test_api_error_has_code_and_message() -> None:
    response = make_client().post("/orders", json={"quantity": 13})
    assert response.status_code == 409
    assert response.json() == {
        "error": {"code": "offer_delisted", "message": "The offer is no longer listed."}
    }


def test_validation_errors_are_422_with_fields() -> None:
    response = make_client().post("/orders", json={"quantity": 0})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["fields"][0]["location"] == "body.quantity"
    assert "greater than or equal to 1" in error["message"]


def test_malformed_json_is_a_4xx() -> None:
    response = make_client().post(
        "/orders", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


def test_unknown_route_is_404_with_code() -> None:
    response = make_client().get("/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_unexpected_errors_do_not_leak_internals() -> None:
    response = make_client().get("/boom")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert "secret" not in response.text


def limited_client(limit: int) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_body_bytes=limit)

    @app.post("/orders")
    async def place(body: Body) -> dict[str, int]:
        return {"quantity": body.quantity}

    @app.post("/files")
    async def upload(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    return TestClient(app, raise_server_exceptions=False)


def test_a_body_declared_over_the_limit_is_413_before_the_route() -> None:
    response = limited_client(100).post(
        "/orders", content=b'{"quantity": 1' + b" " * 200 + b"}", headers=JSON
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert "100 bytes" in response.json()["error"]["message"]


def test_a_body_streamed_over_the_limit_is_413() -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"quantity": 1'
        yield b" " * 200
        yield b"}"

    for path in ("/orders", "/files"):
        response = limited_client(100).post(path, content=chunks(), headers=JSON)
        assert response.status_code == 413, path
        assert response.json()["error"]["code"] == "payload_too_large"


def test_a_body_within_the_limit_is_read() -> None:
    response = limited_client(100).post("/orders", json={"quantity": 3})
    assert response.json() == {"quantity": 3}


def test_json_nested_too_deeply_or_not_utf8_says_so() -> None:
    deep = make_client().post("/orders", content=b"[" * 100_000, headers=JSON)
    assert deep.status_code == 400
    assert deep.json()["error"] == {
        "code": "unreadable_body",
        "message": "The JSON body is nested too deeply to read.",
    }
    garbled = make_client().post("/orders", content=b'{"quantity": "\xff"}', headers=JSON)
    assert garbled.status_code == 400
    assert garbled.json()["error"]["code"] == "unreadable_body"


def test_a_nul_in_the_path_or_query_is_422_before_the_route() -> None:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(NulInUrlRefused)
    seen: list[str] = []

    @app.get("/tickets/{ticket_id}")
    async def ticket(ticket_id: str, q: str = "") -> dict[str, str]:
        seen.append(ticket_id)
        return {"id": ticket_id, "q": q}

    client = TestClient(app, raise_server_exceptions=False)
    for url in ("/tickets/%00", "/tickets/a%00b", "/tickets/t-1?q=%00", "/tickets/t-1?q%00=x"):
        response = client.get(url)
        assert response.status_code == 422, url
        assert response.json()["error"]["code"] == "invalid_url"
    assert seen == []
    assert client.get("/tickets/t-1?q=%E5%8D%A1").json() == {"id": "t-1", "q": "卡"}
