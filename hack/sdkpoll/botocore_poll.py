"""Calls STS GetCallerIdentity in a loop with botocore in its default configuration, the library
the AWS CLI runs on, printing "ok <arn>" or "error <message>" per call (see main.go).

    python3 botocore_poll.py DURATION_SECONDS INTERVAL_SECONDS [CALLS]
"""
import sys
import time

try:
    from botocore import session
except ImportError:  # AWS CLI v2 ships its own copy of botocore
    from awscli.botocore import session

duration, interval = float(sys.argv[1]), float(sys.argv[2])
calls = int(sys.argv[3]) if len(sys.argv) > 3 else 0  # 0: only the duration counts
client = session.get_session().create_client("sts")
end, n = time.time() + duration, 0
while time.time() < end and (calls == 0 or n < calls):
    n += 1
    try:
        print("ok", client.get_caller_identity()["Arn"], flush=True)
    except Exception as e:  # every failure is reported, none stops the loop
        print("error", str(e).replace("\n", " "), flush=True)
    time.sleep(interval)
