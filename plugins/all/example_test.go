package all_test

import (
	"context"
	"fmt"
	"time"

	// Benthos' core components (generate, mapping, drop, ...).
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"

	// This distribution's Braze and Amplitude plugins.
	_ "github.com/opencurrents/currents-amplitude/plugins/all"
)

// Example builds the plugins into one's own program: blank-import
// plugins/all next to the Benthos components you want, then either hand
// control to the Benthos CLI in main (service.RunCLI(ctx), as this
// distribution's main.go does) or build a stream in code, as here: one Braze
// Currents event, in the HTTP connector shape, is turned into the Amplitude
// event Braze's connector would send. In a real pipeline the output would be
// `amplitude: { api_key: ${AMPLITUDE_API_KEY} }` instead of a Go function.
func Example() {
	sb := service.NewStreamBuilder()
	if err := sb.SetLoggerYAML("level: none"); err != nil {
		panic(err)
	}
	if err := sb.AddInputYAML(`
generate:
  count: 1
  interval: ""
  mapping: |
    root = {
      "event_type": "users.messages.inappmessage.Impression",
      "id": "a1b2c3d4-0000-4000-8000-000000000001",
      "time": 1700000000,
      "user": { "user_id": "5f0000000000000000000001", "external_user_id": "user-42" },
      "properties": { "app_id": "app-1", "campaign_name": "Spring Sale" }
    }
`); err != nil {
		panic(err)
	}
	if err := sb.AddProcessorYAML(`braze_to_amplitude: {}`); err != nil {
		panic(err)
	}
	if err := sb.AddConsumerFunc(func(_ context.Context, msg *service.Message) error {
		b, err := msg.AsBytes()
		if err != nil {
			return err
		}
		typ, _ := msg.MetaGet("currents_event_type")
		fmt.Printf("%s\n%s\n", typ, b)
		return nil
	}); err != nil {
		panic(err)
	}
	stream, err := sb.Build()
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := stream.Run(ctx); err != nil {
		panic(err)
	}
	// Output:
	// users.messages.inappmessage.Impression
	// {"event_type":"[Appboy] In-App Message Impression","user_id":"user-42","insert_id":"a1b2c3d4-0000-4000-8000-000000000001","time":1700000000000,"library":"Braze","event_properties":{"app_id":"app-1","campaign_name":"Spring Sale"}}
}
