"""When EDropout's search stops: `stop_fraction` of the epochs, or `patience` generations without a new
best state (`patience_fraction` of the search window, so it can fire in short runs too)."""

from __future__ import annotations

import math
import warnings


class Convergence:
    """The stopping rules of the search, mixed into `EDropout` (which owns the attributes used here:
    config, epochs, epoch, step, steps_per_epoch, history, frozen and the convergence records)."""

    def _search_limit(self) -> float:
        limit = self.config.stop_fraction * self.epochs
        return max(1.0, limit) if self.config.stop_fraction > 0 else 0.0

    def _search_over(self) -> bool:
        """Past `stop_fraction` of the epochs; a run shorter than 1/stop_fraction epochs still
        searches for its first epoch (else a 1-epoch run would keep the random initial mask)."""
        return self.epoch > self._search_limit()

    @property
    def search_window_generations(self) -> int | None:
        """Generations the search runs without a patience stop (None until steps per epoch are known)."""
        if self.steps_per_epoch is None:
            return None
        return min(self.epochs, math.floor(self._search_limit())) * self.steps_per_epoch

    @property
    def patience_generations(self) -> int | None:
        """Generations without a new best state that stop the search: the smaller of `patience` and
        `patience_fraction` x the search window (the latter only once the window is known)."""
        cfg, window = self.config, self.search_window_generations
        candidates = [cfg.patience] if cfg.patience is not None else []
        if cfg.patience_fraction is not None and window is not None:
            candidates.append(max(1, math.ceil(cfg.patience_fraction * window)))
        return min(candidates) if candidates else None

    @property
    def searched_epochs(self) -> int:
        """Epochs in which at least one generation ran (the last one possibly in part)."""
        return len({g.epoch for g in self.history})

    def _check_patience(self) -> None:
        window, patience = self.search_window_generations, self.config.patience
        if self._warned_patience or window is None or patience is None or patience < window:
            return
        self._warned_patience = True
        if self.config.patience_fraction is None:
            warnings.warn(
                f"EDropout patience {patience} can never fire: the search window has only {window} "
                "generations (set patience_fraction, or a smaller patience)",
                stacklevel=3,
            )

    def _freeze(self, reason: str = "finalize") -> None:
        if not self.frozen:
            self.frozen = True
            self.converged_epoch, self.converged_step = self.epoch, self.step
            self.stop_reason = reason
