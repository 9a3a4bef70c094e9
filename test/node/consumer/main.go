// Command consumer is the real-node suite's workload: a long-running aws-sdk-go-v2 program with the
// SDK's default configuration (AWS_CONFIG_FILE, credential_process, environment variables, all as
// a user's pod would set them) that calls STS GetCallerIdentity in a loop and prints one line per
// call:
//
//	ok <arn> key:<first 12 hex digits of the sha256 of the access key id>
//	error <message>
//
// The hash tells rotations apart in the log without printing any part of a credential.
// The endpoint comes from AWS_ENDPOINT_URL_STS (the STS emulator). With EXPIRY_WINDOW it keeps that
// expiry window, as the README advises for aws-sdk-go-v2 with credential_process; without it the
// configuration is exactly config.LoadDefaultConfig's (the container credentials endpoint, whose
// window the SDK sets itself). It never retries, so every failure shows. INTERVAL is the time
// between calls (default 500ms). With S3_BUCKET set it writes an object
// to that bucket instead (path-style, for MinIO; the endpoint from AWS_ENDPOINT_URL_S3).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func main() {
	interval, err := time.ParseDuration(env("INTERVAL", "500ms"))
	if err != nil {
		fmt.Println("error INTERVAL:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	var opts []func(*config.LoadOptions) error
	if v := os.Getenv("EXPIRY_WINDOW"); v != "" {
		window, err := time.ParseDuration(v)
		if err != nil {
			fmt.Println("error EXPIRY_WINDOW:", err)
			os.Exit(2)
		}
		opts = append(opts, config.WithCredentialsCacheOptions(func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = window }))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		fmt.Println("error loading the configuration:", oneLine(err))
		os.Exit(1)
	}
	call := identity(cfg)
	if bucket := os.Getenv("S3_BUCKET"); bucket != "" {
		call = put(cfg, bucket)
	}
	for {
		what, err := call(ctx)
		var creds aws.Credentials
		if err == nil {
			// The credentials the call was signed with, from the SDK's cache (with the container
			// endpoint and short sessions the SDK asks it again).
			creds, err = cfg.Credentials.Retrieve(ctx)
		}
		if err != nil {
			fmt.Println("error", oneLine(err))
		} else {
			fmt.Printf("ok %s key:%s\n", what, keyHash(creds.AccessKeyID))
		}
		time.Sleep(interval)
	}
}

// identity calls STS GetCallerIdentity and returns the caller's ARN.
func identity(cfg aws.Config) func(context.Context) (string, error) {
	client := sts.NewFromConfig(cfg, func(o *sts.Options) { o.RetryMaxAttempts = 1 })
	return func(ctx context.Context) (string, error) {
		out, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			return "", err
		}
		return aws.ToString(out.Arn), nil
	}
}

// put writes an object to bucket and returns its s3:// address.
func put(cfg aws.Config, bucket string) func(context.Context) (string, error) {
	client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.RetryMaxAttempts = 1; o.UsePathStyle = true })
	return func(ctx context.Context) (string, error) {
		_, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("from-pod.txt"), Body: strings.NewReader("hello")})
		return "s3://" + bucket + "/from-pod.txt", err
	}
}

// keyHash is how the log names an access key.
func keyHash(accessKeyID string) string {
	sum := sha256.Sum256([]byte(accessKeyID))
	return hex.EncodeToString(sum[:])[:12]
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }
