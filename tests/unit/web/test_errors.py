from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from kami_web.errors import ApiError, install_error_handlers


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
