"""schemathesis hooks for Tests/Contract/contract.py: records every call's operation, method and
status (one JSON line each, in $CONTRACT_RECORD) so the driver can tell which operations answered
2xx. The coverage phase also probes each path with methods it does not document; those lines carry
the method actually sent."""
import json
import os

import schemathesis


@schemathesis.hook
def after_call(context, case, response):
    with open(os.environ["CONTRACT_RECORD"], "a") as f:
        f.write(json.dumps({"operation": case.operation.label, "status": response.status_code,
                            "source": os.environ.get("CONTRACT_SOURCE", "schemathesis"),
                            "method": response.request.method}) + "\n")
