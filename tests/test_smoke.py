from flask.testing import FlaskClient


def test_health(client: FlaskClient) -> None:
    assert client.get("/api/health").json == {
        "status": "healthy",
        "database": "ok",
        "mqtt": "connected",
    }
