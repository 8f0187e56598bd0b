"""The `report` command's execution (papermill) and rendering (nbconvert: one self-contained HTML file, images
as data URIs, no scripts fetched from the network)."""
from __future__ import annotations

from pathlib import Path

from ..data.store import atomic_path

# The lab template without the scripts it would fetch from CDNs (require.js, MathJax, mermaid):
# the report is one file that renders offline.
_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def notebook_to_html(notebook: str | Path, title: str = "daebench report") -> str:
    """Self-contained HTML of an executed notebook: code hidden, images as data URIs."""
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4)
    exporter = HTMLExporter(template_name="lab", template_file="daebench_report.html.j2",
                            extra_loaders=[DictLoader({"daebench_report.html.j2": _TEMPLATE})],
                            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            embed_images=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    return body


def render_report(notebook: str | Path, executed: str | Path, out_html: str | Path, parameters: dict,
                  cwd: str | Path = ".", kernel_name: str = "python3") -> Path:
    """Execute ``notebook`` with papermill (the executed copy, with any traceback, at ``executed``),
    then write it as self-contained HTML to ``out_html`` atomically. Papermill's
    PapermillExecutionError propagates when a cell fails."""
    import papermill as pm

    executed, out_html = Path(executed), Path(out_html)
    executed.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(notebook), str(executed), parameters=parameters, kernel_name=kernel_name,
                        progress_bar=False, cwd=str(cwd))
    html = notebook_to_html(executed)
    with atomic_path(out_html) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return out_html
