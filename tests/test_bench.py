"""The benchmark runs end to end and writes the figures it promises (no timing thresholds here)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_writes_every_figure(tiny_faces, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "compare.bench", "--data-dir", tiny_faces, "--image-size", "16",
                           "--window", "1", "--json-out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    figures = json.load(open(out))["sizes"]["16"]
    for key in ("train_speedup", "pipeline_headroom", "latency_ms_b1", "flops_fraction_of_peak"):
        assert figures[key] > 0
    assert "speed-up (kit / original)" in proc.stdout
