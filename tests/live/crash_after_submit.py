"""`mbats live`, except that the process dies (SIGKILL) the moment its first order reaches OANDA.

That is the worst moment to crash: the order exists at the broker but the runner never saw the
acknowledgement. The restart test runs this instead of `python -m mbats.cli.live`, so production
code carries no test hook.
"""

import os
import signal

from oandapyV20.endpoints.orders import OrderCreate

from mbats.cli.live import main
from mbats.venues.oanda.client import OandaClient

_send = OandaClient._send  # the one place every request goes out


def _send_then_die(self, endpoint):
    answer = _send(self, endpoint)
    if isinstance(endpoint, OrderCreate):
        os.kill(os.getpid(), signal.SIGKILL)
    return answer


OandaClient._send = _send_then_die

if __name__ == "__main__":
    main()
