// Command consumer is the real-node suite's workload: a long-running aws-sdk-go-v2 program with the
// SDK's default configuration (AWS_CONFIG_FILE, credential_process, environment variables, all as
// a user's pod would set them) that calls STS GetCallerIdentity in a loop and prints one line per
// call:
//
//	ok <arn>
//	error <message>
//
// The endpoint comes from AWS_ENDPOINT_URL_STS (the STS emulator). It keeps the expiry window the
// README advises for aws-sdk-go-v2 and never retries, so every failure shows.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func main() {
	interval, err := time.ParseDuration(env("INTERVAL", "500ms"))
	if err != nil {
		fmt.Println("error INTERVAL:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithCredentialsCacheOptions(func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = time.Second }))
	if err != nil {
		fmt.Println("error loading the configuration:", oneLine(err))
		os.Exit(1)
	}
	client := sts.NewFromConfig(cfg, func(o *sts.Options) { o.RetryMaxAttempts = 1 })
	for {
		out, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			fmt.Println("error", oneLine(err))
		} else {
			fmt.Println("ok", aws.ToString(out.Arn))
		}
		time.Sleep(interval)
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }
