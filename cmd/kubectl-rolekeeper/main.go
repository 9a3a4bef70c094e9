// Command kubectl-rolekeeper is the kubectl plugin for rolekeeper: `kubectl rolekeeper status`,
// `rotate`, `explain` and `inspect`. Install it on the PATH with
//
//	go install github.com/rolekeeper/rolekeeper/cmd/kubectl-rolekeeper@latest
//
// and kubectl finds it by its name. It talks to the API server with the current kubeconfig and
// never prints a credential.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
)

func main() { os.Exit(run()) }

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand(os.Stdout, clock.RealClock{}).ExecuteContext(ctx); err != nil {
		_, _ = fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	return 0
}

// output is where a command prints. It keeps the first write error, which the command then
// returns, so that each print need not be checked.
type output struct {
	w   io.Writer
	err error
}

func (o *output) Write(b []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.w.Write(b)
	o.err = err
	return n, err
}

func (o *output) printf(format string, args ...any) { _, _ = fmt.Fprintf(o, format, args...) }

// plugin is what every subcommand shares: where to print, the clock, and the API client built
// from the kubeconfig flags.
type plugin struct {
	out       *output
	clock     clock.Clock
	loading   *clientcmd.ClientConfigLoadingRules
	overrides *clientcmd.ConfigOverrides
	client    client.WithWatch
	namespace string
}

func newRootCommand(out io.Writer, clk clock.Clock) *cobra.Command {
	p := &plugin{out: &output{w: out}, clock: clk, loading: clientcmd.NewDefaultClientConfigLoadingRules(), overrides: &clientcmd.ConfigOverrides{}}
	root := &cobra.Command{
		Use:           "kubectl rolekeeper",
		Short:         "Look at and act on rolekeeper AssumedRoles",
		Long:          "kubectl rolekeeper shows the state of AssumedRoles, rotates their credentials, explains why one is or is not permitted, and inspects their Secrets without printing a credential.",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return p.connect()
		},
		PersistentPostRunE: func(*cobra.Command, []string) error {
			return p.out.err
		},
	}
	root.SetOut(out)
	flags := root.PersistentFlags()
	flags.StringVar(&p.loading.ExplicitPath, "kubeconfig", "", "Path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config).")
	clientcmd.BindOverrideFlags(p.overrides, flags, clientcmd.RecommendedConfigOverrideFlags(""))
	root.AddCommand(p.statusCommand(), p.rotateCommand(), p.explainCommand(), p.inspectCommand())
	return root
}

func (p *plugin) connect() error {
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(p.loading, p.overrides)
	cfg, err := cc.ClientConfig()
	if err != nil {
		return err
	}
	if p.namespace, _, err = cc.Namespace(); err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(rkv1.AddToScheme(scheme))
	p.client, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	return err
}

func (p *plugin) now() time.Time { return p.clock.Now() }
