// Command caddy is Caddy with its standard modules and the olla module, built
// with a plain `go build ./cmd/caddy` (what xcaddy would generate, offline).
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-olla/olla"
	_ "github.com/caddy-olla/olla/adapter"
)

func main() {
	caddycmd.Main()
}
