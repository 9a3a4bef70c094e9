// Command ststest runs the rolekeeper STS emulator (pkg/sts/ststest) as a process, for the demo
// and end-to-end tests. STS answers on /, the test controls on /_ststest/.
//
//	go run ./hack/ststest -addr 127.0.0.1:8900 -time-scale 60
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // the profiles servePprof serves
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (port 0 picks a free port)")
	accessKey := flag.String("access-key", "AKIAROLEKEEPERDEMO01", "access key id the operator signs with")
	secretKey := flag.String("secret-key", "rolekeeper-demo-secret-key-000000000000", "secret access key of -access-key")
	arn := flag.String("arn", "arn:aws:iam::000000000000:user/rolekeeper", "identity of -access-key")
	timeScale := flag.Float64("time-scale", 1, "divide granted lifetimes by this: 60 makes a 900 s session last 15 s")
	strict := flag.Bool("strict-roles", false, "refuse roles that have no rule (set rules with POST /_ststest/role)")
	urlFile := flag.String("url-file", "", "write the base URL to this file once listening")
	pprofAddr := flag.String("pprof-addr", "", "serve Go's profiles (/debug/pprof/) on this address, apart from STS (benchmarks)")
	var extra principalsFlag
	flag.Var(&extra, "principal", "another identity that may sign calls, as ACCESS_KEY:SECRET_KEY:ARN (repeatable)")
	flag.Parse()
	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr); err != nil {
			fmt.Fprintln(os.Stderr, "ststest:", err)
			os.Exit(1)
		}
	}
	if err := run(*addr, append([]ststest.Principal{{AccessKeyID: *accessKey, SecretAccessKey: *secretKey, Arn: *arn}}, extra...), *timeScale, *strict, *urlFile); err != nil {
		fmt.Fprintln(os.Stderr, "ststest:", err)
		os.Exit(1)
	}
}

// servePprof serves the emulator's own profiles on addr, on a listener of its own: the scale
// benchmark reads where the emulator's CPU goes, since it shares the machine with the operator.
// net/http/pprof registers its handlers on the default mux, which nothing else here uses.
func servePprof(addr string) error {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", addr)
	if err != nil {
		return err
	}
	go func() { _ = http.Serve(l, nil) }()
	return nil
}

// principalsFlag collects -principal ACCESS_KEY:SECRET_KEY:ARN values.
type principalsFlag []ststest.Principal

func (p *principalsFlag) String() string { return fmt.Sprint(len(*p), " principals") }

func (p *principalsFlag) Set(v string) error {
	parts := strings.SplitN(v, ":", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || !strings.HasPrefix(parts[2], "arn:") {
		return errors.New("want ACCESS_KEY:SECRET_KEY:ARN")
	}
	*p = append(*p, ststest.Principal{AccessKeyID: parts[0], SecretAccessKey: parts[1], Arn: parts[2]})
	return nil
}

func run(addr string, principals []ststest.Principal, timeScale float64, strict bool, urlFile string) error {
	for _, p := range principals {
		if !strings.HasPrefix(p.Arn, "arn:") {
			return errors.New("-arn must be an ARN")
		}
	}
	srv := ststest.New(ststest.Options{
		Principals:  principals,
		TimeScale:   timeScale,
		StrictRoles: strict,
	})
	mux := http.NewServeMux()
	mux.Handle("/_ststest/", srv.ControlHandler())
	mux.Handle("/", srv)
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", addr)
	if err != nil {
		return err
	}
	url := "http://" + l.Addr().String()
	if urlFile != "" {
		if err := os.WriteFile(urlFile, []byte(url), 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("ststest listening on %s (time scale %g)\n", url, timeScale)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	errc := make(chan error, 1)
	go func() { errc <- http.Serve(l, mux) }()
	select {
	case <-stop:
		return l.Close()
	case err := <-errc:
		return err
	}
}
