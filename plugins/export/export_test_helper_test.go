package export

import (
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
)

// NewInputForTest builds an amplitude_export input from its YAML config with
// the given clock and resources (nil: mock resources).
func NewInputForTest(yaml string, clk clock.Clock, res *service.Resources) (service.BatchInput, error) {
	conf, err := amplitudeExportSpec().ParseYAML(yaml, nil)
	if err != nil {
		return nil, err
	}
	if res == nil {
		res = service.MockResources()
	}
	return newAmplitudeExportFromParsed(conf, res, clk)
}
