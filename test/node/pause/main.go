// Command pause is the real-node suite's sandbox (pause) image: it holds a pod's namespaces and
// does nothing until it is told to stop. No registry is reachable, so the suite builds it.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
