"""The web UI through the ASGI test client: discovery, path confinement, token, grid filters,
cached overlays, live feeds, model store and try-it, actions."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("starlette", reason="the ui extra (starlette) is not installed")
from starlette.exceptions import HTTPException
from starlette.testclient import TestClient

from synthloop.errors import SynthloopError
from synthloop.ui.actions import build_argv
from synthloop.ui.app import create_app
from synthloop.ui.paint import class_colour
from synthloop.ui.security import LOOPBACK_HOSTS, check_bind

torch.set_num_threads(1)
HTML = {"accept": "text/html"}


@pytest.fixture(scope="module")
def client(ui_workspace) -> TestClient:
    return TestClient(create_app(ui_workspace))


def _frames_in_grid(html: str) -> list[str]:
    return [s.split('"')[0] for s in html.split('data-frame="')[1:]]


def test_workspace_lists_every_kind_and_a_broken_folder_as_an_error_card(client):
    items = {(i["kind"], i["path"]): i for i in client.get("/api/workspace").json()}
    assert {("dataset", "toy"), ("coco", "real/annotations.json"), ("job", "job"), ("run", "runs/r1")} <= set(
        items
    )
    assert ("model", "runs/r1/checkpoints/last.pt") in items
    assert items[("dataset", "broken")]["error"].startswith("dataset.json: invalid JSON")
    assert items[("dataset", "toy")]["info"] == {"classes": ["date", "fig"], "frames": 6}
    r = client.get("/", headers=HTML)
    assert r.status_code == 200 and 'class="card broken"' in r.text and "toy" in r.text
    for section in ("datasets", "runs", "jobs", "models", "experiments", "evals"):
        assert client.get(f"/section/{section}", headers=HTML).status_code == 200


@pytest.mark.parametrize("p", ["../", "/etc/passwd", "toy/../../", "outside/passwd", "~root"])
def test_paths_outside_root_are_refused(client, ui_workspace, p):
    link = ui_workspace / "outside"
    if not link.exists():
        os.symlink("/etc", link)
    for route in ("/file", "/dataset", "/run", "/api/metrics"):
        assert client.get(route, params={"p": p, "max_s": 0}).status_code == 403, (route, p)


def test_token_is_required_off_loopback(ui_workspace):
    with pytest.raises(SynthloopError, match="--token"):
        check_bind("0.0.0.0", None)
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    c = TestClient(create_app(ui_workspace, token="s3cret"))
    assert c.get("/api/workspace").status_code == 401
    assert c.get("/api/workspace", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/api/workspace", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    r = c.get("/?token=s3cret")  # sets the cookie the browser then sends
    assert r.status_code == 200 and "synthloop_token" in r.headers["set-cookie"]
    assert c.get("/api/workspace").status_code == 200


def _records(root: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((root / "toy" / "records").glob("*.json"))}


def test_grid_filters_select_exactly_the_matching_frames(client, ui_workspace):
    recs = _records(ui_workspace)
    assert _frames_in_grid(client.get("/dataset?p=toy").text) == sorted(recs)
    want = sorted(k for k, r in recs.items() if any(o["category_id"] == 2 for o in r["objects"]))
    assert 0 < len(want) < len(recs)
    assert _frames_in_grid(client.get("/dataset?p=toy&cls=2").text) == want
    got = _frames_in_grid(client.get("/dataset?p=toy&param=scene.light&pmin=0.15&pmax=0.35").text)
    assert got == ["000002", "000003"]
    got = _frames_in_grid(client.get("/dataset?p=toy&occ_min=0.4").text)
    assert got == ["000004", "000005"]
    big = sorted(
        k
        for k, r in recs.items()
        if any(o["category_id"] == 1 and o["area"] ** 0.5 >= 30 for o in r["objects"])
    )
    assert _frames_in_grid(client.get("/dataset?p=toy&cls=1&side_min=30").text) == big
    assert client.get("/dataset?p=toy&occ_min=nan").status_code == 400
    assert client.get("/dataset?p=toy&pmin=x&param=scene.light").status_code == 400
    assert _frames_in_grid(client.get("/dataset?p=toy&param=scene.nope&pmin=0").text) == []


def test_thumbnails_are_rendered_once_and_show_the_class_colours(client, ui_workspace):
    r = client.get("/pic?p=toy&i=1&layer=overlay")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    key = hashlib.sha1(b"toy").hexdigest()[:12]  # the cache folder of dataset "toy" (any version)
    cached = list((ui_workspace / ".synthloop-ui-cache" / "datasets").glob(f"{key}-*/thumb/overlay/1.jpg"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    assert client.get("/pic?p=toy&i=1&layer=overlay").content == r.content
    assert cached[0].stat().st_mtime_ns == mtime
    img = np.asarray(
        Image.open(io.BytesIO(client.get("/pic?p=toy&i=1&layer=overlay&full=1").content)).convert("RGB")
    )
    cats = {o["category_id"] for o in _records(ui_workspace)["000001"]["objects"]}
    for c in cats:  # box outlines are drawn in the class colour
        near = np.abs(img.astype(int) - np.array(class_colour(c))).sum(-1) < 30
        assert near.sum() > 50, c
    depth = np.asarray(
        Image.open(io.BytesIO(client.get("/pic?p=toy&i=1&layer=depth").content)).convert("RGB")
    )
    assert depth.std() > 10  # objects at 1 m, background no-hit: two distinct colours


def test_frame_and_stats_pages_show_the_record(client, ui_workspace):
    r = client.get("/frame?p=toy&i=3", headers=HTML)
    assert r.status_code == 200 and "Scene parameters" in r.text and "light" in r.text and "0.3" in r.text
    s = client.get("/stats?p=toy", headers=HTML)
    n_obj = sum(len(r["objects"]) for r in _records(ui_workspace).values())
    assert s.status_code == 200 and f"{n_obj} objects" in s.text
    assert s.text.index("[0.0, 0.1)") < s.text.index("[0.1, 0.2)") < s.text.index("unknown")  # bins in order
    again = client.get("/stats?p=toy", headers=HTML).text  # now from the cache
    assert again.index("[8, 16)") < again.index("[16, 32)") < again.index("[128, 256)")
    assert client.get("/dataset?p=broken", headers=HTML).status_code == 422
    coco = client.get("/dataset?p=real/annotations.json")
    assert coco.status_code == 200 and len(_frames_in_grid(coco.text)) == 3


def _events(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def test_metrics_feed_sends_only_new_points(client, ui_workspace):
    ev = _events(client.get("/api/metrics?p=runs/r1&max_s=0").text)
    assert len(ev) == 1 and [p[0] for p in ev[0]["points"]["loss"]] == [1, 2, 3]
    assert ev[0]["points"]["val.recall"] == [[3, 0.25]] and ev[0]["points"]["val.AP"] == [[3, 0.125]]
    metrics = ui_workspace / "runs" / "r1" / "metrics.jsonl"
    with open(metrics, "a") as fh:
        fh.write(json.dumps({"kind": "train", "step": 4, "loss": 1.0, "lr": 0.001}) + "\n" + '{"kind": "tr')
    again = _events(client.get(f"/api/metrics?p=runs/r1&max_s=0&offset={ev[0]['offset']}").text)
    assert again[0]["points"] == {"loss": [[4, 1.0]], "lr": [[4, 0.001]]}  # half line waits
    r = client.get("/run?p=runs/r1", headers=HTML)
    assert r.status_code == 200 and "last.pt" in r.text and "live-chart" in r.text


def test_job_feed_reports_progress_per_shard(client, ui_workspace):
    ev = _events(client.get("/api/job?p=job&max_s=0").text)
    done0 = len(
        list((ui_workspace / "job" / "shards" / "0000" / "records").glob("*.json"))
    )  # 1 (2 after e2e)
    assert ev[0]["done"] == done0 and ev[0]["frames"] == 4
    assert [(s["index"], s["done"], s["planned"]) for s in ev[0]["shards"]] == [(0, done0, 2), (1, 0, 2)]
    assert ev[0]["failed"] == [3] and ev[0]["shards"][1]["state"] == "failed"
    assert client.get("/job?p=job", headers=HTML).status_code == 200


def test_model_store_describes_and_tries_a_checkpoint(client, ui_workspace):
    r = client.get("/model?p=runs/r1/checkpoints/last.pt", headers=HTML)
    assert r.status_code == 200 and "detectnet_v2" in r.text and "date, fig" in r.text and "float32" in r.text
    dl = client.get("/file?p=runs/r1/checkpoints/last.pt&dl=1")
    assert dl.content == (ui_workspace / "runs/r1/checkpoints/last.pt").read_bytes()
    assert "attachment" in dl.headers["content-disposition"]
    png = (ui_workspace / "toy" / "images" / "000001.png").read_bytes()
    out = client.post("/api/try?p=runs/r1/checkpoints/last.pt&score=0", content=png)
    assert out.status_code == 200, out.text
    body = out.json()
    assert body["image"].startswith("data:image/png;base64,")
    assert body["detections"] and {d["class"] for d in body["detections"]} == {"date"}
    drawn = np.asarray(
        Image.open(io.BytesIO(base64.b64decode(body["image"].split(",", 1)[1]))).convert("RGB")
    )
    assert (
        drawn.shape == (96, 128, 3)
        and (drawn != np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))).any()
    )
    assert client.post("/api/try?p=runs/r1/checkpoints/last.pt", content=b"GIF89a nope").status_code == 415
    assert client.post("/api/try?p=runs/r1/checkpoints/last.pt", content=b"").status_code == 400
    big = b"\0" * (8 << 20 + 1)
    assert client.post("/api/try?p=runs/r1/checkpoints/last.pt", content=big).status_code == 413


def test_actions_only_run_specs_under_root_and_stream_their_log(client, ui_workspace):
    bad = client.post("/api/actions", data={"kind": "train", "spec": "../x.yaml", "out": "runs/a"})
    assert bad.status_code == 403
    bad = client.post("/api/actions", data={"kind": "train", "spec": "specs/tiny.yaml", "out": "/tmp/x"})
    assert bad.status_code == 403
    assert (
        client.post("/api/actions", data={"kind": "train", "spec": "nope.yaml", "out": "r"}).status_code
        == 404
    )
    assert client.post("/api/actions", data={"kind": "rm -rf"}).status_code == 400
    (ui_workspace / "specs" / "bad.yaml").write_text("model: [1\n")
    a = client.post(
        "/api/actions",
        data={"kind": "train", "spec": "specs/bad.yaml", "out": "runs/bad"},
        headers={"accept": "application/json"},
    ).json()
    assert a["argv"][:2] == ["train", "specs/bad.yaml"] and a["state"] == "running"
    deadline = time.monotonic() + 60
    while client.get(f"/action?id={a['id']}").status_code == 200 and time.monotonic() < deadline:
        ev = _events(client.get(f"/api/action-log?id={a['id']}&max_s=0").text)
        if ev and ev[-1]["state"] != "running":
            break
        time.sleep(0.3)
    text = "".join(e["text"] for e in ev)
    assert ev[-1]["state"] == "failed" and "bad.yaml" in text
    assert a["id"] in client.get("/actions", headers=HTML).text


def test_a_running_action_can_be_cancelled(client, ui_workspace):
    a = client.post(
        "/api/actions",
        data={"kind": "train", "spec": "specs/tiny.yaml", "out": "runs/cancelled"},
        headers={"accept": "application/json"},
    ).json()
    c = client.post(f"/api/actions/cancel?id={a['id']}").json()
    assert c["cancelled"] is True
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = _events(client.get(f"/api/action-log?id={a['id']}&max_s=0").text)[-1:]
        if st and st[0]["state"] != "running":
            break
        time.sleep(0.2)
    assert st[0]["state"] == "cancelled"


def test_eval_reports_experiments_and_model_ap_are_shown(client):
    run = client.get("/run?p=runs/r1", headers=HTML).text
    assert "runs/r1/eval/report.json" in run and "COCO AP 0." in run and "eval/overlays/" in run
    m = client.get("/model?p=runs/r1/checkpoints/last.pt", headers=HTML).text
    assert "no evaluation found" not in m
    mix = client.get("/experiment?p=mix", headers=HTML).text
    assert '<iframe class="report" sandbox src="/file?p=mix/report.html">' in mix
    rep = client.get("/file?p=mix/report.html")
    assert "Mixing report" in rep.text and rep.headers["content-security-policy"].startswith("sandbox")
    ev = client.get("/experiment?p=runs/r1/eval", headers=HTML).text
    assert "Worst frames" in ev and "report.json" in ev
    kinds = {(i["kind"], i["path"]) for i in client.get("/api/workspace").json()}
    assert {("mix", "mix"), ("eval", "runs/r1/eval"), ("active", "loop"), ("kitti", "kitti")} <= kinds
    assert "Active loop report" in client.get("/file?p=loop/report.html").text
    assert "loop/report.html" in client.get("/experiment?p=loop", headers=HTML).text


def test_a_kitti_folder_opens_like_any_dataset(client, ui_workspace):
    r = client.get("/dataset?p=kitti&cls=2")
    want = sorted(
        k for k, v in _records(ui_workspace).items() if any(o["category_id"] == 2 for o in v["objects"])
    )
    assert r.status_code == 200 and len(_frames_in_grid(r.text)) == len(want)
    assert client.get("/pic?p=kitti&i=0").status_code == 200
    assert client.get("/stats?p=kitti", headers=HTML).status_code == 200
    f = client.get("/frame?p=kitti&i=0", headers=HTML)
    assert f.status_code == 200 and "Objects" in f.text


def test_action_arguments_are_built_from_workspace_paths_only(ui_workspace):
    root = ui_workspace.resolve()
    argv, outs = build_argv(
        root, "generate", {"recipe": "tabletop", "frames": "3", "seed": "7", "out": "d/new"}
    )
    assert argv == [
        "generate",
        "--recipe",
        "tabletop",
        "--frames",
        "3",
        "--seed",
        "7",
        "--out",
        "d/new",
        "--quiet",
    ]
    assert outs == ["d/new"]
    with pytest.raises(HTTPException) as e:
        build_argv(root, "generate", {"recipe": "/etc/passwd", "out": "d"})
    assert e.value.status_code == 403
    with pytest.raises(HTTPException) as e:
        build_argv(root, "generate", {"recipe": "tabletop", "frames": "1e9", "out": "d"})
    assert e.value.status_code == 400
    assert build_argv(root, "farm-run", {"job": "job", "workers": "1"})[0] == [
        "farm",
        "run",
        "job",
        "--workers",
        "1",
        "--quiet",
    ]
    with pytest.raises(HTTPException):
        build_argv(root, "farm-run", {"job": "toy"})  # not a job folder
    argv, _ = build_argv(
        root, "evaluate", {"model": "runs/r1", "data": "real/annotations.json", "out": "evals/e"}
    )
    assert argv == ["evaluate", "runs/r1", "--data", "real/annotations.json", "--out", "evals/e"]
    with pytest.raises(HTTPException) as e:
        build_argv(root, "evaluate", {"model": "runs/r1", "data": "toy", "out": "."})  # ROOT itself
    assert e.value.status_code == 403


def test_compare_page_charts_each_chosen_run(client):
    r = client.get("/compare?p=runs/r1&p=runs/r1/eval", headers=HTML)
    assert r.status_code == 200 and 'data-runs=\'["runs/r1", "runs/r1/eval"]\'' in r.text
    assert client.get("/compare?p=../x", headers=HTML).status_code == 403


REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real" / "coco-person"


@pytest.mark.skipif(not (REAL / "person_keypoints.json").exists(), reason="real coco-person data not present")
def test_keypoints_and_skeleton_are_drawn_on_real_coco_person(tmp_path):
    src = json.loads((REAL / "person_keypoints.json").read_text())
    img = next(
        i
        for i in src["images"]
        if any(a["image_id"] == i["id"] and a.get("num_keypoints", 0) > 5 for a in src["annotations"])
    )
    sub = {
        **src,
        "images": [img],
        "annotations": [a for a in src["annotations"] if a["image_id"] == img["id"]],
    }
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / Path(img["file_name"]).name).write_bytes(
        (REAL / "images" / Path(img["file_name"]).name).read_bytes()
    )
    sub["images"] = [{**img, "file_name": "images/" + Path(img["file_name"]).name}]
    (tmp_path / "person.json").write_text(json.dumps(sub))
    c = TestClient(create_app(tmp_path))
    assert len(_frames_in_grid(c.get("/dataset?p=person.json").text)) == 1
    drawn = np.asarray(Image.open(io.BytesIO(c.get("/pic?p=person.json&i=0&full=1").content)).convert("RGB"))
    raw = np.asarray(
        Image.open(io.BytesIO(c.get("/pic?p=person.json&i=0&full=1&layer=image").content)).convert("RGB")
    )
    scale = drawn.shape[0] // raw.shape[0]
    raw = raw.repeat(scale, 0).repeat(scale, 1)
    white = lambda a: int((a.min(-1) >= 250).sum())  # noqa: E731 - visible keypoints are white dots
    assert white(drawn) > white(raw) + 50
    assert (np.abs(drawn.astype(int) - np.array(class_colour(1))).sum(-1) < 30).sum() > 100  # box + skeleton


def test_cli_refuses_a_network_address_without_a_token(ui_workspace):
    from typer.testing import CliRunner

    from synthloop.cli import app

    r = CliRunner().invoke(app, ["ui", str(ui_workspace), "--host", "0.0.0.0"])
    assert r.exit_code == 2 and "--token" in r.output and len(r.output.strip().splitlines()) == 1


def test_cross_site_posts_and_foreign_host_names_are_refused(ui_workspace):
    c = TestClient(create_app(ui_workspace, allowed_hosts=LOOPBACK_HOSTS), base_url="http://127.0.0.1:8765")
    form = {"kind": "train", "spec": "specs/bad.yaml", "out": "runs/csrf"}
    evil = c.post("/api/actions", data=form, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403 and not (ui_workspace / "runs" / "csrf").exists()
    assert (
        c.post("/api/actions/cancel?id=x", headers={"Referer": "http://evil.example/page"}).status_code == 403
    )
    ok = c.post("/api/actions/cancel?id=nope", headers={"Origin": "http://127.0.0.1:8765"})
    assert ok.status_code == 404  # same origin: reaches the handler
    assert c.get("/api/workspace").status_code == 200
    rebound = TestClient(
        create_app(ui_workspace, allowed_hosts=LOOPBACK_HOSTS), base_url="http://evil.example"
    )
    assert rebound.get("/api/workspace").status_code == 400
