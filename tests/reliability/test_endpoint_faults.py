"""Teacher endpoint faults during a real build: 429 with Retry-After, 500s, timeouts, truncated
JSON, empty text, dropped connections, requests that never succeed, and a server that dies and
comes back. The build completes, reports its failed requests, and a re-run against the healed
server ends with exactly the dataset of a fault-free build: nothing lost."""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support.reliability import QUICKSTART, figure
from support.servers import Reply, free_port, scripted_server

from steper_bench.build import build
from steper_bench.recipe import load_recipe
from steper_bench.sources import load_questions

pytestmark = pytest.mark.slow

SETS = ["source.train_limit=20", "source.test_limit=3", "dataset.filter=all", "teacher.backend=openai",
        "teacher.model=scripted", "teacher.concurrency=8", "teacher.timeout_s=0.5", "teacher.max_retries=3"]
FAULTS = ["429", "500", "timeout", "truncated", "empty", "drop", "502"]
N_BROKEN = 2  # questions whose every request fails


def _h(text: str) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16)


class Teacher:
    """IRCoT-like answers: question i needs 1-3 sentences, the last "So the answer is: <gold>.".
    With `faulty`, the first attempt of about 3 prompts in 4 gets one of FAULTS, and every
    request of N_BROKEN questions gets a 500."""

    def __init__(self, questions, faulty: bool):
        self.gold = {q.question.strip(): q.answer for q in questions}
        self.broken = set(sorted(self.gold, key=_h)[:N_BROKEN]) if faulty else set()
        self.faulty = faulty
        self.attempts: Counter = Counter()
        self.injected: Counter = Counter()
        self.lock = threading.Lock()
        self.server = None  # set by the test: the 40th completion request takes the server down

    def __call__(self, req):
        prompt = (req.body or {}).get("prompt") if isinstance(req.body, dict) else None
        if not prompt:
            return Reply(json={"object": "list", "data": [{"id": "scripted", "object": "model"}]})
        question = prompt.rsplit("\nQ: ", 1)[1].split("\nA:", 1)[0].strip()
        with self.lock:
            self.attempts[prompt] += 1
            first = self.attempts[prompt] == 1
            n = sum(self.attempts.values())
        if self.faulty and self.server is not None and n == 40:  # dies now, back 0.8 s later
            self.injected["server down 0.8s"] += 1
            threading.Thread(target=self.server.down_for, args=(0.8,)).start()
        if question in self.broken:
            return self._fault("500-forever", req)
        if self.faulty and first and _h(prompt) % 4:
            return self._fault(FAULTS[_h(prompt) % len(FAULTS)], req)
        done = len(re.findall(r"[.!?](?:\s|$)", prompt.rsplit("\nA:", 1)[1]))
        if done + 1 >= 1 + _h(question) % 3:
            return Reply.text(req, f" So the answer is: {self.gold[question]}.")
        words = " ".join(re.sub(r"[^\w\s]", " ", question).split())
        return Reply.text(req, f" Step {done + 2} is about {words}.")

    def _fault(self, kind: str, req) -> Reply:
        with self.lock:
            self.injected[kind] += 1
        return {
            "429": Reply(status=429, headers={"Retry-After": "0.2"}, json={"error": {"message": "slow down"}}),
            "500": Reply(status=500, json={"error": {"message": "boom"}}),
            "502": Reply(status=502, raw=b"<html>bad gateway</html>"),
            "500-forever": Reply(status=500, json={"error": {"message": "always broken"}}),
            "timeout": Reply.text(req, " late.", delay_s=1.5),
            "truncated": Reply(raw=b'{"id": "x", "object": "text_completion", "choices": [{"te'),
            "empty": Reply.text(req, "   "),
            "drop": Reply(drop=True),
        }[kind]


def _tables(folder: Path) -> dict:
    keep = ["question_id", "reasoning", "prediction", "stop_reason", "kept", "acc"]
    out = {}
    for p in sorted(folder.glob("*/*.parquet")):
        t = pq.read_table(p)
        out[(p.parent.name, p.name)] = (t.select(keep) if p.parent.name == "trajectories" else t).to_pylist()
    return out


def test_faulty_teacher_build_completes_reports_and_converges(tmp_path):
    probe = load_recipe(QUICKSTART, [f"runs_dir={tmp_path}/probe", *SETS])
    questions = load_questions(probe, "train").questions + load_questions(probe, "test").questions

    faulty = Teacher(questions, faulty=True)
    port = free_port()  # both teachers on one URL: the URL is part of the recipe hash on every row
    with scripted_server(faulty, port) as url:
        r = load_recipe(QUICKSTART, [f"runs_dir={tmp_path}/faulty", *SETS, f"teacher.base_url={url}"])
        faulty.server = url
        first = build(r, progress=False, log=lambda m: None)
        st = first.splits["train"]
        # Completed, with the permanently failing questions counted as failed, not lost or kept.
        assert st.questions == 20 and st.generated == 20
        assert st.dropped["failed steps"] == N_BROKEN and st.kept == 20 - N_BROKEN
        assert first.errors == N_BROKEN, first.format()
        assert f"retries {first.retries}, failed {N_BROKEN}" in first.format()
        injected = sum(faulty.injected.values())
        assert set(faulty.injected) >= {*FAULTS, "500-forever", "server down 0.8s"}, faulty.injected
        # The server heals: the re-run redoes only the failed questions, from the cache otherwise.
        faulty.broken.clear()
        again = build(r, progress=False, log=lambda m: None)
        assert again.splits["train"].resumed == 20 - N_BROKEN and again.splits["train"].generated == N_BROKEN
        assert again.errors == 0 and again.splits["train"].kept == 20

    with scripted_server(Teacher(questions, faulty=False), port) as url:
        clean = build(load_recipe(QUICKSTART, [f"runs_dir={tmp_path}/clean", *SETS, f"teacher.base_url={url}"]),
                      progress=False, log=lambda m: None)
    got, want = _tables(Path(again.paths["dataset"])), _tables(Path(clean.paths["dataset"]))
    assert got == want
    lost = len(want[("trajectories", "train-00000-of-00001.parquet")]) - \
        len(got[("trajectories", "train-00000-of-00001.parquet")])
    figure("teacher endpoint faults (build, openai backend)", faults=injected, completed=2, lost=lost)

    # Retries must be visible in the build's report, not only inside the generator.
    assert first.retries >= injected - faulty.injected["500-forever"]
