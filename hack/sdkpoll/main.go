// Command sdkpoll calls STS GetCallerIdentity in a loop with aws-sdk-go-v2 in its default
// configuration (config.LoadDefaultConfig and nothing else), printing "ok <arn>" or
// "error <message>" per call. The credentials sidecar's SDK tests run it, and its Python and
// JavaScript twins beside it, against the STS emulator.
//
//	sdkpoll -duration 60s -interval 250ms [-calls N]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func main() {
	duration := flag.Duration("duration", time.Minute, "how long to keep calling")
	interval := flag.Duration("interval", 250*time.Millisecond, "pause between calls")
	calls := flag.Int("calls", 0, "stop after this many calls; 0: only the duration counts")
	flag.Parse()
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sdkpoll:", err)
		os.Exit(1)
	}
	client := sts.NewFromConfig(cfg)
	for n, end := 0, time.Now().Add(*duration); time.Now().Before(end) && (*calls == 0 || n < *calls); n, _ = n+1, sleep(*interval) {
		out, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			fmt.Println("error", strings.ReplaceAll(err.Error(), "\n", " "))
			continue
		}
		fmt.Println("ok", *out.Arn)
	}
}

func sleep(d time.Duration) bool {
	time.Sleep(d)
	return true
}
