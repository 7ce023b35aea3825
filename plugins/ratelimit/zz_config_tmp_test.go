package ratelimit

import (
	"context"
	"testing"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
)

func TestTmpConfig(t *testing.T) {
	code, err := service.RunCLIToCode(context.Background(),
		service.CLIOptSetArgs("x", "test", "--log", "error", "../../config/components/device_rate_limit.yaml"))
	if err != nil || code != 0 {
		t.Fatal(code, err)
	}
}
