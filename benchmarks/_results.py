"""Writing a benchmark's report: every figure as JSON, the tables as markdown."""
import json
import os
import platform


def write_results(directory: str, name: str, report: dict, text: str) -> None:
    """``name.json`` and ``name.md`` in ``directory``; the markdown is printed too."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f'{name}.json'), 'w') as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(directory, f'{name}.md'), 'w') as f:
        f.write(text)
    print(text)


def machine() -> dict:
    """What the figures were measured on: CPU model, cores, Python, the SIMD features that
    decide the classifier's speed, and memory."""
    info = {'cpu': platform.processor() or platform.machine(), 'cpus': os.cpu_count(),
            'python': platform.python_version()}
    try:
        with open('/proc/cpuinfo') as file:
            text = file.read()
        info['cpu'] = next(line.split(':', 1)[1].strip() for line in text.splitlines() if line.startswith('model name'))
        flags = next(line.split(':', 1)[1].split() for line in text.splitlines() if line.startswith('flags'))
        info['features'] = [name for name in ('avx2', 'fma', 'avx512f', 'avx512_bf16', 'amx_bf16') if name in flags]
        with open('/proc/meminfo') as file:
            info['memory_gb'] = round(int(file.readline().split()[1]) / 1024 ** 2, 1)
    except (OSError, StopIteration):
        pass
    return info
