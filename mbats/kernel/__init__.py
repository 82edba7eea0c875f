"""The trading kernel: what backtests, research sweeps and live sessions share, engine-neutral.

- :mod:`.strategies`  strategy lookup by name and typed ``--param`` values
- :mod:`.signals`     :class:`~.signals.SignalStrategy`: targets from a vectorised ``signals()``
- :mod:`.indicators`  exact rolling indicators strategies and the compiled sweep core use
- :mod:`.costs`       the fill-cost rule (half spread, slippage, commission) and backtrader's ``FxCosts``
- :mod:`.fx`          account-currency conversion of P&L and costs
- :mod:`.sizing`      ``--sizer`` text to a sizer
- :mod:`.limits`      pre-trade risk limits and the daily-loss kill switch
- :mod:`.trades`      trade columns and the engine-neutral trade fingerprint
- :mod:`.version`     the code version every run records

The pip of a pair is the security master's rule (:func:`mbats.secmaster.instruments.pip_size`).
Nothing here imports :mod:`mbats.backtest`, :mod:`mbats.research` or :mod:`mbats.live`.
"""
