package cohort

import (
	"errors"
	"fmt"

	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonw"
)

// ID types of a [Change]: Braze external ids (Amplitude user_id) or device ids
// of anonymous users.
const (
	IDTypeExternal = "external_id"
	IDTypeDevice   = "device_id"
)

// Change is one batch of membership changes of one cohort: the message shape
// exchanged between the amplitude_cohort input (or the webhook pipeline) and
// the braze_cohort output. All ids of a Change share one IDType.
type Change struct {
	CohortID   string
	CohortName string
	IDType     string
	Added      []string
	Removed    []string
}

// AppendJSON appends c to dst as a JSON object.
func (c *Change) AppendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	dst = jsonw.AppendKey(dst, "cohort_id")
	dst = jsonw.AppendString(dst, c.CohortID)
	dst = append(dst, ',')
	dst = jsonw.AppendKey(dst, "cohort_name")
	dst = jsonw.AppendString(dst, c.CohortName)
	dst = append(dst, ',')
	dst = jsonw.AppendKey(dst, "id_type")
	dst = jsonw.AppendString(dst, c.IDType)
	dst = append(dst, ',')
	dst = appendIDs(dst, "added", c.Added)
	dst = append(dst, ',')
	dst = appendIDs(dst, "removed", c.Removed)
	return append(dst, '}')
}

func appendIDs(dst []byte, key string, ids []string) []byte {
	dst = jsonw.AppendKey(dst, key)
	dst = append(dst, '[')
	for i, id := range ids {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonw.AppendString(dst, id)
	}
	return append(dst, ']')
}

// ParseChange decodes and validates a membership change message. id_type
// defaults to external_id; added and removed default to empty.
func ParseChange(b []byte) (Change, error) {
	var c Change
	if !gjson.ValidBytes(b) {
		return c, errors.New("membership change is not valid JSON")
	}
	root := gjson.ParseBytes(b)
	if !root.IsObject() {
		return c, errors.New("membership change must be a JSON object")
	}
	var err error
	if c.CohortID, err = stringField(root, "cohort_id", true); err != nil {
		return c, err
	}
	if c.CohortName, err = stringField(root, "cohort_name", true); err != nil {
		return c, err
	}
	if c.IDType, err = stringField(root, "id_type", false); err != nil {
		return c, err
	}
	switch c.IDType {
	case "":
		c.IDType = IDTypeExternal
	case IDTypeExternal, IDTypeDevice:
	default:
		return c, fmt.Errorf("id_type must be %q or %q, got %q", IDTypeExternal, IDTypeDevice, c.IDType)
	}
	if c.Added, err = idsField(root, "added"); err != nil {
		return c, err
	}
	if c.Removed, err = idsField(root, "removed"); err != nil {
		return c, err
	}
	return c, nil
}

func stringField(root gjson.Result, key string, required bool) (string, error) {
	v := root.Get(key)
	switch {
	case !v.Exists() || v.Type == gjson.Null:
		if required {
			return "", fmt.Errorf("membership change has no %s", key)
		}
		return "", nil
	case v.Type != gjson.String:
		return "", fmt.Errorf("%s must be a string", key)
	case required && v.Str == "":
		return "", fmt.Errorf("%s must not be empty", key)
	}
	return v.Str, nil
}

func idsField(root gjson.Result, key string) ([]string, error) {
	v := root.Get(key)
	if !v.Exists() || v.Type == gjson.Null {
		return nil, nil
	}
	if !v.IsArray() {
		return nil, fmt.Errorf("%s must be an array of strings", key)
	}
	var ids []string
	var err error
	v.ForEach(func(_, id gjson.Result) bool {
		if id.Type != gjson.String || id.Str == "" {
			err = fmt.Errorf("%s must contain only non-empty strings", key)
			return false
		}
		ids = append(ids, id.Str)
		return true
	})
	return ids, err
}
