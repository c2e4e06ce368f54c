#!/usr/bin/env python3
"""Renders a Chrome trace from loopctl into a PNG with headless Chromium and trace-viewer.html.

    python3 docs/viewer/render.py TRACE.json OUT.png [TITLE]
"""
import json
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
trace_path, out_png = sys.argv[1], sys.argv[2]
title = sys.argv[3] if len(sys.argv) > 3 else os.path.basename(trace_path)
with open(trace_path) as f:
    doc = json.load(f)
with open(os.path.join(here, "trace-viewer.html")) as f:
    html = f.read()
inline = "<script>window.TRACE = %s;</script>" % json.dumps(doc)
html = html.replace("<script>\nconst COLORS", inline + "\n<script>\nconst COLORS", 1)
html = html.replace('<h1 id="title">libloop trace</h1>', '<h1 id="title">%s</h1>' % title)
with tempfile.TemporaryDirectory() as d:
    page = os.path.join(d, "page.html")
    with open(page, "w") as f:
        f.write(html)
    chromium = next(p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p))
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--user-data-dir=" + os.path.join(d, "profile"),
                    "--window-size=1440,640", "--screenshot=" + os.path.abspath(out_png),
                    "file://" + page], check=True, capture_output=True, timeout=120)
print("wrote", out_png)
