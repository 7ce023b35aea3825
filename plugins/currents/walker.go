package currents

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonlimit"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonscan"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonvalid"
)

// walker visits the keys of an event (and of its user/properties objects),
// collecting the special fields and writing the rest as event_properties.
type walker struct {
	m    *Mapper
	info *typeInfo
	dst  []byte
	// text receives the unescaped strings read while walking (see
	// jsonscan.Scanner.Unescaped): they must not outlive the walk.
	text *[]byte
	f    fields
	err  error
	bodyCheck
}

// visit is called for each member of the event (see flattened); key and
// value are valid during the call only.
func (w *walker) visit(key, value *gjson.Result) bool {
	k := key.Str
	switch k {
	case "event_type", "user_id":
		return true
	case "id":
		w.f.id = *value
		return true
	case "time":
		w.f.time = *value
		return true
	case "external_user_id":
		w.f.extUserID = *value
		return true
	case "device_id":
		w.f.deviceID = *value
		return true
	case "user":
		return w.notObject(value, k) // an object's members are visited in its place (flattened)
	case "properties":
		if w.info.kind != KindRegular { // likewise
			return w.customProperties(value, k)
		}
	case "custom_properties", "purchase_properties":
		if w.info.kind != KindRegular {
			return w.customProperties(value, k)
		}
	case "time_ms":
		w.f.timeMS = *value
	case "ad_id":
		w.f.adID = *value
	case "ad_id_type":
		w.f.adIDType = *value
	case "platform":
		w.f.platform = *value
	case "os_version":
		w.f.osVersion = *value
	case "device_model":
		w.f.deviceModel = *value
	case "latitude":
		w.f.lat = *value
	case "longitude":
		w.f.lng = *value
	case "gender", "country", "language", "carrier", "resolution", "sdk_version",
		"canvas_step_message_variation_id":
		return true // demographics and internal ids Braze does not send
	case "timezone":
		if w.info.rules&keepTimezone == 0 {
			return true
		}
	case "phone_number":
		if w.info.rules&noPhone != 0 {
			return true
		}
	case "name":
		if w.info.kind == KindCustom {
			w.f.name = *value
			return true
		}
	case "product_id", "price", "quantity":
		if k == "product_id" && w.info.rules&topProductID != 0 {
			w.f.productID = *value
			return true
		}
		if w.info.kind == KindPurchase {
			switch k {
			case "product_id":
				w.f.productID = *value
			case "price":
				w.f.price = *value
			default:
				w.f.quantity = *value
			}
			return true
		}
	case "content_card_id":
		if w.info.rules&cardID != 0 {
			w.property(`"card_id"`, value, false)
			return true
		}
	}
	if strings.HasSuffix(k, "_api_id") {
		return true // deprecated API-id duplicates of the BSON ids
	}
	w.property(key.Raw, value, isFloatField(k))
	return true
}

// flattened names the members whose object values (the user and properties
// objects of the HTTP shape) are walked in their place
// (jsonscan.ForEachFlat).
func flattened(key string, array bool) bool { return !array && (key == "user" || key == "properties") }

// bodyCheck is the descend function of a validating walk
// (jsonscan.Scanner): it flattens as flattened does, and notes an
// "events" list, which may make the event a request body (told apart the
// slow way).
type bodyCheck struct{ body bool }

func (b *bodyCheck) descend(key string, array bool) bool {
	if array && key == "events" {
		b.body = true
	}
	return flattened(key, array)
}

// notObject handles a user or properties member that is not an object
// (objects are flattened): null is nothing, anything else an error.
func (w *walker) notObject(value *gjson.Result, name string) bool {
	if value.Type == gjson.Null {
		return true
	}
	w.err = fmt.Errorf("field %s must be an object, got %s", name, typeName(*value))
	return false
}

// customProperties writes custom event or purchase properties, given as an
// object (HTTP shape) or a JSON-encoded string (storage shape), with the
// configured key prefix.
func (w *walker) customProperties(v *gjson.Result, name string) bool {
	value := *v
	switch value.Type {
	case gjson.Null:
		return true
	case gjson.String:
		if value.Str == "" || w.encodedProperties(value.Str) {
			return true
		}
		// Not a JSON-encoded object: say why.
		if jsonlimit.Exceeds(value.Str, MaxDepth) {
			w.err = deadletter.New(deadletter.ReasonTooLarge, "field %s nests JSON deeper than %d levels", name, MaxDepth)
			return false
		}
		if !gjson.Valid(value.Str) {
			w.err = fmt.Errorf("field %s is not a valid JSON-encoded object", name)
			return false
		}
		value = gjson.Parse(value.Str)
	}
	if !value.IsObject() {
		w.err = fmt.Errorf("field %s must be an object, got %s", name, typeName(value))
		return false
	}
	prefix := w.propPrefix()
	jsonscan.ForEach(value.Raw, func(key, v gjson.Result) bool {
		w.customProperty(prefix, &key, &v)
		return true
	})
	return true
}

// encodedProperties writes the members of enc, custom properties as a
// JSON-encoded object, and reports whether enc is one (valid JSON nested
// within MaxDepth): it is validated in the same pass. When it is not,
// nothing is written.
func (w *walker) encodedProperties(enc string) bool {
	if i := jsonvalid.SkipSpace(enc, 0); i >= len(enc) || enc[i] != '{' {
		return false
	}
	mark, n := len(w.dst), w.f.props
	prefix := w.propPrefix()
	var s jsonscan.Scanner
	s.Reset(enc, MaxDepth)
	s.Unescaped = w.text
	for s.Next(nil) {
		w.customProperty(prefix, &s.Key, &s.Value)
	}
	if !s.Valid() {
		w.dst, w.f.props = w.dst[:mark], n
		return false
	}
	return true
}

// propPrefix is the key prefix of the event's custom properties.
func (w *walker) propPrefix() []byte {
	if w.info.kind == KindPurchase {
		return w.m.purchasePropPrefix
	}
	return w.m.customPropPrefix
}

// customProperty writes one custom property (nulls are left out).
func (w *walker) customProperty(prefix []byte, key, v *gjson.Result) {
	if v.Type == gjson.Null {
		return
	}
	w.comma()
	w.dst = append(w.dst, '"')
	w.dst = append(w.dst, prefix...)
	w.dst = append(w.dst, key.Raw[1:]...)
	w.dst = append(append(w.dst, ':'), v.Raw...)
}

func (w *walker) comma() {
	if w.f.props > 0 {
		w.dst = append(w.dst, ',')
	}
	w.f.props++
}

// property writes one Braze field under its raw (quoted) JSON key; nulls are
// left out.
func (w *walker) property(rawKey string, value *gjson.Result, float bool) {
	if value.Type == gjson.Null {
		return
	}
	w.comma()
	w.dst = append(append(w.dst, rawKey...), ':')
	w.dst = appendNumber(w.dst, value, float)
}

// appendNumber writes value as is, except Avro floats: a number exactly
// representable as a float32 is written in its shortest float32 form.
func appendNumber(dst []byte, value *gjson.Result, float bool) []byte {
	if float && value.Type == gjson.Number && strings.ContainsAny(value.Raw, ".eE") {
		if f32 := float32(value.Num); float64(f32) == value.Num {
			return strconv.AppendFloat(dst, float64(f32), 'g', -1, 32)
		}
	}
	return append(dst, value.Raw...)
}
