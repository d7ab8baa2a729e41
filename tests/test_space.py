"""The Gradio Space (`transformers_unicode.space`) on a tiny UniCode model: through gradio_client, and in a real
headless Chromium driven by playwright."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the Space needs gradio: pip install 'transformers-unicode[space]'")
pytest.importorskip(
    "gradio_client", reason="gradio_client comes with gradio: pip install 'transformers-unicode[space]'"
)

import httpx  # noqa: E402  (a gradio dependency)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from conftest import UNUSABLE_IMAGE_KINDS, tiny_llm, tiny_unicode, unusable_image_files  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import StoppingCriteriaList  # noqa: E402

from transformers_unicode.space import UniCodeImageTokenProgress, build_demo, launch_space  # noqa: E402

MAX_FILE_SIZE = 100_000  # bytes
CHAT_TOKENS = 16  # the tiny model writes a few <unk> first, then text
DISPLAY_SIZE = 128  # a 16x16 image is shown 8x
QUESTION = "what is this?"
CHROMIUM = "/usr/bin/chromium"
APP = Path(__file__).resolve().parents[1] / "examples" / "space" / "app.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def upscaled(image: Image.Image) -> Image.Image:
    factor = DISPLAY_SIZE // max(image.size)
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def pixels(image) -> np.ndarray:
    return np.asarray(Image.open(image).convert("RGB") if isinstance(image, str) else image.convert("RGB"))


@pytest.fixture(scope="module")
def png(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "red.png"
    Image.new("RGB", (16, 16), (220, 30, 30)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """The Space launched on a free local port with a tiny UniCode folder: (demo, url, folder)."""
    model, processor = tiny_unicode()
    folder = str(tmp_path_factory.mktemp("unicode"))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    demo = launch_space(
        folder,
        server_port=free_port(),
        prevent_thread_lock=True,
        quiet=True,
        max_file_size=MAX_FILE_SIZE,
        display_size=DISPLAY_SIZE,
        chat_max_new_tokens=CHAT_TOKENS,
        max_queue_size=4,
    )
    try:
        yield demo, demo.local_url, folder
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(space):
    return Client(space[1], verbose=False)


@pytest.fixture(scope="module")
def expected_answer(space, png):
    """The answer plain transformers gives (greedy) to the chat's first question."""
    unicode = space[0].unicode_space
    model, processor = unicode.model, unicode.processor
    prompt = processor.apply_chat_template(
        unicode.conversation([], QUESTION), tokenize=False, add_generation_prompt=True
    )
    inputs = processor(images=Image.open(png), text=prompt, return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=CHAT_TOKENS, do_sample=False)
    return processor.decode(output[0, inputs["input_ids"].shape[1] :]).strip()


def message_text(message) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(item.get("text", "") for item in content)


# ---- loading ---------------------------------------------------------------------------------------------
def test_missing_or_foreign_folder_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-model-here"
    with pytest.raises(FileNotFoundError, match="no-model-here"):
        build_demo(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty.*config.json"):
        build_demo(tmp_path / "empty")
    llama = tmp_path / "llama"
    tiny_llm().save_pretrained(llama)
    with pytest.raises(ValueError, match=r"llama.*'llama' model, not a UniCode model"):
        build_demo(llama)


def test_api_names_and_no_analytics(space, client):
    demo = space[0]
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/chat", "/text_to_image", "/tokenize"}
    assert not api["unnamed_endpoints"]
    assert [p["parameter_name"] for p in api["named_endpoints"]["/chat"]["parameters"]] == [
        "image",
        "message",
        "history",
        "max_new_tokens",
    ]
    assert demo.analytics_enabled is False and demo.share is False


# ---- through gradio_client -------------------------------------------------------------------------------
def test_chat_about_an_uploaded_png(client, png, expected_answer):
    history = client.predict(handle_file(png), QUESTION, [], CHAT_TOKENS, api_name="/chat")
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert message_text(history[0]) == QUESTION
    assert expected_answer  # the tiny model does write text within CHAT_TOKENS
    assert message_text(history[1]) == expected_answer  # streamed answer == plain generate's
    # A follow-up carries the history (the image stays in the first user turn).
    history = client.predict(handle_file(png), "and the colour?", history, 4, api_name="/chat")
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert message_text(history[1]) == expected_answer and message_text(history[2]) == "and the colour?"
    # Image markers typed by a user are text, not image slots (only the Space places the image).
    history = client.predict(handle_file(png), "<image><|image_start|>what?", [], 2, api_name="/chat")
    assert history[-1]["role"] == "assistant"


def test_text_to_image_is_the_seeded_guided_sample_upscaled(space, client):
    path = client.predict("a red apple", 3.0, 7, api_name="/text_to_image")
    image = Image.open(path)
    assert image.format == "PNG" and image.size == (DISPLAY_SIZE, DISPLAY_SIZE)
    assert np.array_equal(
        pixels(path), pixels(client.predict("a red apple", 3.0, 7, api_name="/text_to_image"))
    )
    # The README's recipe, by hand: the same seed gives the same sample.
    model, processor = space[0].unicode_space.model, space[0].unicode_space.processor
    text = processor.apply_chat_template(
        [{"role": "user", "content": "a red apple"}], tokenize=False, add_generation_prompt=True
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        ids = model.generate(
            **processor(text=text, return_tensors="pt"), generation_mode="image", guidance_scale=3.0
        )
    assert np.array_equal(pixels(path), pixels(upscaled(processor.decode_images(ids)[0])))


def test_progress_counts_image_tokens(space):
    unicode = space[0].unicode_space
    processor = unicode.processor
    total = processor.image_generation_length
    reports = []
    progress = UniCodeImageTokenProgress(
        total, lambda written, total: reports.append((written, total)), every=1
    )
    text = processor.apply_chat_template(
        [{"role": "user", "content": "a tree"}], tokenize=False, add_generation_prompt=True
    )
    unicode.model.generate(
        **processor(text=text, return_tensors="pt"),
        generation_mode="image",
        stopping_criteria=StoppingCriteriaList([progress]),
    )
    # One report per code, then one for the closing marker (still total of total).
    assert reports == [(n, total) for n in range(1, total + 1)] + [(total, total)]


def test_tokenize_shows_llm_tokens_and_their_reconstruction(space, client, png):
    table, reconstruction = client.predict(handle_file(png), api_name="/tokenize")
    processor = space[0].unicode_space.processor
    codes = processor.encode_images(Image.open(png))[0]  # (h, w, D)
    height, width, depth = codes.shape
    assert table["headers"] == ["position"] + [f"code {d + 1}" for d in range(depth)]
    assert len(table["data"]) == height * width
    first = codes[0, 0].tolist()
    tokens = processor.tokenizer.convert_ids_to_tokens(first)
    assert table["data"][0] == ["(0, 0)"] + [f"{t} ({i})" for t, i in zip(tokens, first, strict=True)]
    # The reconstruction decoded from those LLM ids == the processor's own read span, decoded.
    expected = processor.decode_images(processor(images=Image.open(png))["input_ids"])[0]
    assert Image.open(reconstruction).size == (DISPLAY_SIZE, DISPLAY_SIZE)
    assert np.array_equal(pixels(reconstruction), pixels(upscaled(expected)))


@pytest.mark.parametrize(
    "api_name, args, message",
    [
        ("/chat", (None, QUESTION, [], 8), "Upload an image first"),
        ("/chat", ("PNG", "   ", [], 8), "The question is empty"),
        ("/chat", ("PNG", "x" * 1001, [], 8), "keep it under 1000"),
        ("/text_to_image", ("", 3.0, 0), "The prompt is empty: type one, e.g. 'a red apple'"),
        ("/text_to_image", ("a red apple", 3.0, -1), "The seed must be a whole number from 0 to 4294967295"),
        ("/text_to_image", ("a red apple", 3.0, None), "The seed must be a whole number"),
        ("/tokenize", (None,), "Upload an image first"),
    ],
)
def test_user_errors_come_back_with_our_message(client, png, api_name, args, message):
    args = tuple(handle_file(png) if arg == "PNG" else arg for arg in args)
    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name=api_name)


UPLOADABLE_BAD_KINDS = [kind for kind in UNUSABLE_IMAGE_KINDS if kind not in ("missing", "a folder")]


@pytest.mark.parametrize("api_name", ["/chat", "/tokenize"])
@pytest.mark.parametrize("kind", UPLOADABLE_BAD_KINDS)
def test_unusable_uploads_get_our_message(client, tmp_path, api_name, kind):
    """Every unusable file is opened by the project's image loading, so the visitor reads why, by file name."""
    path, message = unusable_image_files(tmp_path)[kind]
    args = (handle_file(str(path)), QUESTION, [], 8) if api_name == "/chat" else (handle_file(str(path)),)
    with pytest.raises(AppError, match=message) as excinfo:
        client.predict(*args, api_name=api_name)
    assert repr(path.name) in str(excinfo.value) and str(tmp_path) not in str(excinfo.value)


def test_each_image_tab_has_clickable_held_out_examples(space):
    demo = space[0]
    examples = [block for block in demo.blocks.values() if type(block).__name__ == "Dataset"]
    assert len(examples) >= 3  # chat, text to image, tokenize
    samples = [sample for block in examples for sample in block.samples]
    image_paths = [sample[0]["path"] for sample in samples if isinstance(sample[0], dict)]
    assert len(image_paths) >= 6  # three held-out emoji in each image tab
    table, reconstruction = demo.unicode_space.tokenize(image_paths[0])
    assert len(table) == demo.unicode_space.processor.image_seq_length and reconstruction.size[0] > 0


def test_too_large_upload_and_foreign_paths_are_refused(space, client, tmp_path):
    big = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(big)
    assert big.stat().st_size > MAX_FILE_SIZE
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # the client checks first ...
        client.predict(handle_file(str(big)), api_name="/tokenize")
    url = space[1]
    with open(big, "rb") as file:  # ... and the server refuses it anyway
        response = httpx.post(url + "gradio_api/upload", files={"files": ("noise.png", file, "image/png")})
    assert response.status_code == 413
    # A path on the server that no user uploaded is never read (inputs are uploads, never paths).
    event = httpx.post(
        url + "gradio_api/call/tokenize",
        json={"data": [{"path": str(big), "meta": {"_type": "gradio.FileData"}}]},
    ).json()["event_id"]
    assert "event: error" in httpx.get(url + f"gradio_api/call/tokenize/{event}", timeout=30).text


def test_examples_app_serves_the_folder_in_unicode_model(space, tmp_path):
    port = free_port()
    env = {**os.environ, "UNICODE_MODEL": space[2], "GRADIO_SERVER_PORT": str(port)}
    env.pop("SPACE_ID", None)
    log = tmp_path / "app.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(APP)], env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"app.py exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"app.py did not start: {log.read_text()[-2000:]}"
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/gradio_api/info", timeout=5)
                if info.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert set(info.json()["named_endpoints"]) == {"/chat", "/text_to_image", "/tokenize"}
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---- in a real browser -----------------------------------------------------------------------------------
def chromium() -> str:
    """/usr/bin/chromium, installed with apt-get when missing and allowed (root, apt-get present); else a skip."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip(
            f"no Chromium at {CHROMIUM}, and installing it needs root and apt-get: apt-get install -y chromium"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    try:
        if subprocess.run(install, env=env, capture_output=True, timeout=300).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=300, check=True)
            subprocess.run(install, env=env, capture_output=True, timeout=300, check=True)
    except (subprocess.SubprocessError, OSError) as error:
        pytest.skip(f"could not install Chromium with apt-get ({error})")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"apt-get installed chromium but {CHROMIUM} is missing")
    return CHROMIUM


def test_the_space_in_headless_chromium(space, png, expected_answer, tmp_path):
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="the browser test needs playwright: pip install 'transformers-unicode[dev]'",
    )
    executable = chromium()
    url = space[1]
    outside = []

    def local_only(route):  # the page must not reach anything but the Space itself
        if route.request.url.startswith((url, "data:", "blob:")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
            ],
        )
        page = browser.new_page()
        page.set_default_timeout(30_000)
        page.route("**/*", local_only)
        expect = sync_api.expect
        try:
            page.goto(url)
            # Chat: upload, ask, and the streamed answer appears.
            page.locator("#chat-image input[type=file]").set_input_files(png)
            expect(page.locator("#chat-image img")).to_be_visible()
            page.locator("#chat-question textarea").fill(QUESTION)
            page.locator("#chat-send").click()
            expect(page.locator("#chat-history")).to_contain_text(expected_answer)
            expect(page.locator("#chat-question textarea")).to_have_value("")  # cleared once answered
            # Text to image: an <img> appears.
            page.get_by_role("tab", name="Text to image").click()
            page.locator("#t2i-prompt textarea").fill("a red apple")
            page.locator("#t2i-generate").click()
            expect(page.locator("#t2i-output img")).to_be_visible()
            # An empty prompt: our message, in the page.
            page.locator("#t2i-prompt textarea").fill("")
            page.locator("#t2i-generate").click()
            expect(page.get_by_text("The prompt is empty").first).to_be_visible()
        except Exception:
            page.screenshot(path=str(tmp_path / "space.png"), full_page=True)
            raise
        finally:
            browser.close()
    assert not outside, f"the page made outside requests: {outside}"
