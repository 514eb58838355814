// Pins the Google Secret Manager emulator for the integration tests; build.sh builds its
// cmd/server-dual (gRPC + REST). v1.7.1 is the newest version the Go module proxy serves here,
// and `go install …@v1.7.1` fails on the proxy's refused @v/list (deprecation lookup), hence
// this module with a `tool` line.
module cnpg-rotator.test/emulators/gcp-secret-manager

go 1.24.0

require github.com/blackwell-systems/gcp-secret-manager-emulator v1.7.1

require (
	cloud.google.com/go/iam v1.5.3 // indirect
	cloud.google.com/go/secretmanager v1.16.0 // indirect
	github.com/blackwell-systems/gcp-emulator-auth v0.4.0 // indirect
	github.com/grpc-ecosystem/grpc-gateway/v2 v2.28.0 // indirect
	golang.org/x/net v0.48.0 // indirect
	golang.org/x/sys v0.39.0 // indirect
	golang.org/x/text v0.34.0 // indirect
	google.golang.org/genproto v0.0.0-20260126211449-d11affda4bed // indirect
	google.golang.org/genproto/googleapis/api v0.0.0-20260209200024-4cfbd4190f57 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260209200024-4cfbd4190f57 // indirect
	google.golang.org/grpc v1.79.1 // indirect
	google.golang.org/protobuf v1.36.11 // indirect
)

tool github.com/blackwell-systems/gcp-secret-manager-emulator/cmd/server-dual
