from imaging import b64_png


def test_seed_example_answers_with_two_links(client, powertokens_request):
    response = client.post("/v1/images/edits", json=powertokens_request)
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 2
    assert response.headers["x-request-id"]


def test_modelverse_b64_is_png_of_input_size(client, modelverse_request):
    modelverse_request["response_format"] = "b64_json"
    response = client.post("/v1/images/generations", json=modelverse_request)
    assert response.status_code == 200, response.text
    image = b64_png(response.json()["data"][0]["b64_json"])
    assert image.size == (64, 48)
