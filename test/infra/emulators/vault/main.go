// The vault CLI entry point, built by ../build.sh; tests start it as `vault server -dev`.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
