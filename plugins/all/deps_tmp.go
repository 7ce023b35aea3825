// TODO(integration): placeholder that pins dependencies while the plugins are written; removed before release.
package all

import (
	_ "github.com/cenkalti/backoff/v4"
	_ "github.com/golang/snappy"
	_ "github.com/hamba/avro/v2/ocf"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/stretchr/testify/require"
	_ "github.com/tidwall/gjson"
	_ "github.com/twmb/franz-go/pkg/kfake"
	_ "github.com/twmb/franz-go/pkg/kgo"
	_ "github.com/twmb/franz-go/pkg/sasl/scram"
)
