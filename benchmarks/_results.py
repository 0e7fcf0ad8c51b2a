"""Writing a benchmark's report: every figure as JSON, the tables as markdown."""
import json
import os


def write_results(directory: str, name: str, report: dict, text: str) -> None:
    """``name.json`` and ``name.md`` in ``directory``; the markdown is printed too."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f'{name}.json'), 'w') as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(directory, f'{name}.md'), 'w') as f:
        f.write(text)
    print(text)
