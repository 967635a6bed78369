"""Write README.md from nbs/index.ipynb (Quarto, and so `nbdev-readme`, cannot run on every machine).

    python tools/make_readme.py          # regenerate README.md
    python tools/make_readme.py --check  # fail if README.md is out of step with nbs/index.ipynb
"""
import json, re, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent

def render(nb_path=root/"nbs"/"index.ipynb") -> str:
    "Markdown cells verbatim; code cells (not hidden) as Python blocks, then their text output."
    nb = json.loads(nb_path.read_text())
    parts = []
    for c in nb["cells"]:
        src = "".join(c["source"]).strip()
        if not src or re.match(r"^#\|\s*(hide|default_exp)", src): continue
        if c["cell_type"] == "markdown":
            parts.append(src)
            continue
        src = "\n".join(l for l in src.splitlines() if not l.startswith("#|"))
        parts.append(f"```python\n{src}\n```")
        # plots left out: a plot's "<Figure ...>" text says nothing
        out = "".join("".join(o.get("text", "")) or "".join(o.get("data", {}).get("text/plain", ""))
                      for o in c.get("outputs", []) if "image/png" not in o.get("data", {}))
        if out.strip(): parts.append("    " + out.rstrip().replace("\n", "\n    "))
    return ("<!-- Generated from nbs/index.ipynb by tools/make_readme.py: "
            "edit the notebook, not this file. -->\n\n" + "\n\n".join(parts) + "\n")

if __name__ == "__main__":
    text, readme = render(), root/"README.md"
    if "--check" in sys.argv:
        if not readme.exists() or readme.read_text() != text:
            sys.exit("README.md is out of step with nbs/index.ipynb: "
                     "run `python tools/make_readme.py` and commit.")
        print("README.md matches nbs/index.ipynb")
    else:
        readme.write_text(text)
        print(f"wrote {readme}")
