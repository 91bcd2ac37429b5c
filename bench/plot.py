"""docs/img/search_latency.png: p50/p95 per search mode against corpus size, from search results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MODES = ("semantic", "fulltext", "hybrid", "vector_only")


def plot_search_latency(results: list[dict[str, Any]], output: Path) -> Path:
    """Two panels (p50, p95), one line per mode for the API (solid) and raw LanceDB (dotted), log axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = sorted(results, key=lambda r: r["chunks"])
    sizes = [r["chunks"] for r in results]
    colors = {"semantic": "tab:blue", "fulltext": "tab:orange", "hybrid": "tab:green", "vector_only": "tab:purple"}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=120, sharey=True)
    for ax, percentile in zip(axes, ("p50", "p95")):
        for mode in MODES:
            values = [r[mode][f"{percentile}_ms"] for r in results]
            ax.plot(sizes, values, "o-", color=colors[mode], label=mode.replace("_", "-"))
            raw = [r[mode].get(f"raw_{percentile}_ms") for r in results]
            if all(v is not None for v in raw):
                ax.plot(sizes, raw, ":", color=colors[mode], alpha=0.6, linewidth=1)
        ax.axhline(10, color="grey", linewidth=0.8, linestyle="--")
        ax.text(sizes[0], 10.8, "10 ms (vector-only p95 target)", fontsize=7, color="grey")
        ax.axhline(20, color="grey", linewidth=0.8, linestyle="-.")
        ax.text(sizes[0], 21.6, "20 ms (hybrid p95 target at 1M)", fontsize=7, color="grey")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes, [f"{s:,}" for s in sizes])
        ax.minorticks_off()
        ax.set_title(f"{percentile} (solid: API, dotted: LanceDB query builder)", fontsize=9)
        ax.set_xlabel("chunks (20 orgs; every query org-filtered)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms per query, cache off (log)", fontsize=9)
    axes[1].legend(fontsize=8, loc="center right")
    machine = results[-1]["machine"]
    loads = [value for r in results for key in ("load_average_start", "load_average_end")
             for value in r["machine"].get(key, [])[:1]]
    load = f"1-min load avg {min(loads):.1f}-{max(loads):.1f}" if loads else "load not recorded"
    fig.suptitle(f"Search latency vs corpus size - {machine['cpu_model']}, {machine['cores']} cores ({load}); "
                 f"semantic and hybrid include the query embedding", fontsize=9)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output)
    plt.close(fig)
    return output
