// Calls STS GetCallerIdentity in a loop with the AWS SDK for JavaScript v3 in its default
// configuration, printing "ok <arn>" or "error <message>" per call (see main.go).
//
//   NODE_PATH=bin/sdk-js-<version>/node_modules node js_poll.cjs DURATION_SECONDS INTERVAL_SECONDS [CALLS]
const { STSClient, GetCallerIdentityCommand } = require("@aws-sdk/client-sts");

const [duration, interval, calls = 0] = process.argv.slice(2).map(Number); // calls 0: only the duration counts
const client = new STSClient({});
const sleep = (s) => new Promise((resolve) => setTimeout(resolve, s * 1000));

(async () => {
  const end = Date.now() + duration * 1000;
  for (let n = 0; Date.now() < end && (calls === 0 || n < calls); n++) {
    try {
      const out = await client.send(new GetCallerIdentityCommand({}));
      console.log("ok", out.Arn);
    } catch (e) {
      console.log("error", `${e.name}: ${e.message}`.replace(/\n/g, " "));
    }
    await sleep(interval);
  }
})();
