package currentsgen

import (
	"sort"
	"strconv"

	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonw"
)

// kind flags.
const (
	// noDevice marks user-level message types (email, SMS, webhook) that
	// carry no device_id; anonymous users keep theirs so that every event
	// has at least one Amplitude id.
	noDevice = 1 << iota
	// noTimezone marks types whose schema has no timezone field.
	noTimezone
)

type kind struct {
	typ   string
	flags int
	build func(g *Generator, e *Event, d *device)
}

var kinds = []kind{
	{"users.behaviors.CustomEvent", 0, buildCustomEvent},
	{"users.behaviors.Purchase", noTimezone, buildPurchase},
	{"users.behaviors.app.SessionStart", noTimezone, buildSession},
	{"users.behaviors.app.FirstSession", noTimezone, buildSession},
	{"users.behaviors.app.SessionEnd", noTimezone, buildSessionEnd},
	{"users.behaviors.Location", noTimezone, buildLocation},
	{"users.behaviors.Uninstall", noTimezone, buildUninstall},
	{"users.behaviors.subscription.GlobalStateChange", noDevice, buildGlobalStateChange},
	{"users.messages.pushnotification.Send", 0, buildPushSend},
	{"users.messages.pushnotification.Open", 0, buildPushOpen},
	{"users.messages.pushnotification.Bounce", 0, buildPushBounce},
	{"users.messages.email.Send", noDevice, buildEmailSend},
	{"users.messages.email.Delivery", noDevice, buildEmailDelivery},
	{"users.messages.email.Open", noDevice, buildEmailOpen},
	{"users.messages.email.Click", noDevice, buildEmailClick},
	{"users.messages.email.Bounce", noDevice, buildEmailBounce},
	{"users.messages.email.Unsubscribe", noDevice, buildEmailUnsubscribe},
	{"users.messages.inappmessage.Impression", 0, buildInAppImpression},
	{"users.messages.inappmessage.Click", 0, buildInAppClick},
	{"users.messages.contentcard.Impression", 0, buildContentCardImpression},
	{"users.messages.sms.Send", noDevice, buildSMSSend},
	{"users.messages.sms.Delivery", noDevice, buildSMSDelivery},
	{"users.messages.webhook.Send", noDevice, buildWebhookSend},
	{"users.campaigns.Conversion", 0, buildCampaignConversion},
	{"users.canvas.Entry", 0, buildCanvasEntry},
}

var kindByType = func() map[string]kind {
	m := make(map[string]kind, len(kinds))
	for _, k := range kinds {
		m[k.typ] = k
	}
	return m
}()

// Types returns the Currents event types the generator can produce, sorted.
func Types() []string {
	out := make([]string, 0, len(kinds))
	for _, k := range kinds {
		out = append(out, k.typ)
	}
	sort.Strings(out)
	return out
}

// campaign and canvas are the message sources a stream's messages refer to.
type campaign struct{ id, name, varID, varName string }

type canvas struct{ id, name, varID, varName, stepID, stepName string }

var (
	campaignThemes = []string{"Spring Sale", "Welcome Series", "Cart Abandonment", "Weekly Digest", "Win-back 30d",
		"Product Launch: Pro Plan", "Loyalty Tier Upgrade", "Black Friday Early Access", "Price Drop Alert", "Re-engagement"}
	variantNames = []string{"Control", "Variant A", "Variant B - short copy", "Variant C - emoji subject"}
	stepNames    = []string{"Entry push", "Day 1 email", "Wait 2 days", "Reminder in-app", "Offer email", "Final SMS"}
	timezones    = []string{"America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London", "Europe/Paris",
		"Europe/Berlin", "Asia/Tokyo", "Asia/Kolkata", "Australia/Sydney", "America/Sao_Paulo"}
	iosVersions     = []string{"17.6.1", "18.2", "18.5", "18.6.2", "26.0.1"}
	androidVersions = []string{"12", "13", "14", "15", "16"}
	webBrowsers     = []string{"Chrome 131", "Safari 18.2", "Firefox 133", "Edge 131"}
	iosModels       = []string{"iPhone14,5", "iPhone15,2", "iPhone15,3", "iPhone16,1", "iPhone17,1", "iPad13,18"}
	androidModels   = []string{"Pixel 8", "Pixel 9 Pro", "SM-S918B", "SM-A546B", "moto g54 5G", "2311DRK48G"}
	webModels       = []string{"Mac", "Windows", "Linux", "Chromebook"}
	esps            = []string{"SendGrid", "SparkPost", "Amazon SES"}
	mailboxes       = []string{"Gmail", "Yahoo", "Outlook", "Apple iCloud", "Proton"}
	userAgents      = []string{
		"Mozilla/5.0 (iPhone; CPU iPhone OS 18_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.2 Safari/605.1.15",
	}
	customEvents = []string{"viewed_product", "added_to_cart", "search", "level_complete", "video_play", "screen_view",
		"share", "signup_step", "article_read", "app_rating", "logout"}
	products   = []string{"sku_basic_monthly", "sku_pro_annual", "sneakers-air-42", "coffee-beans-1kg", "gift-card-25", "coins_pack_500"}
	prices     = []string{"0.99", "4.99", "9.99", "19.99", "49.9", "3.14", "129"}
	currencies = []string{"USD", "USD", "USD", "EUR", "GBP", "JPY"}
	categories = []string{"shoes", "electronics", "groceries", "books", "games"}
)

func newCatalogue(key uint64) ([]campaign, []canvas) {
	uuid := func(i uint64) string { return string(appendUUID(nil, mix(key^i), mix(key+i))) }
	camps := make([]campaign, 60)
	for i := range camps {
		n := uint64(i)
		camps[i] = campaign{
			id:      uuid(n<<8 | 1),
			name:    campaignThemes[i%len(campaignThemes)] + " #" + strconv.Itoa(i/len(campaignThemes)+1),
			varID:   uuid(n<<8 | 2),
			varName: variantNames[i%len(variantNames)],
		}
	}
	canvs := make([]canvas, 40)
	for i := range canvs {
		n := uint64(i)
		canvs[i] = canvas{
			id:       uuid(n<<8 | 3),
			name:     "Journey: " + campaignThemes[(i+3)%len(campaignThemes)] + " " + strconv.Itoa(2026-i%3),
			varID:    uuid(n<<8 | 4),
			varName:  variantNames[i%2],
			stepID:   uuid(n<<8 | 5),
			stepName: stepNames[i%len(stepNames)],
		}
	}
	return camps, canvs
}

func pick(g *Generator, s []string) string { return s[g.rng.IntN(len(s))] }

// Field helpers. Each appends properties to the event being built.

func (g *Generator) propUUID(key string) {
	g.prop(key, append(appendUUID(append(g.scratch(), '"'), g.rng.Uint64(), g.rng.Uint64()), '"'))
}

func (g *Generator) propHex24(key string) {
	b := append(g.scratch(), '"')
	b = appendHex(appendHex(b, g.rng.Uint64(), 16), g.rng.Uint64(), 8)
	g.prop(key, append(b, '"'))
}

func (g *Generator) propBool(key string, v bool) {
	g.prop(key, strconv.AppendBool(g.scratch(), v))
}

func (g *Generator) propInt(key string, v int64) {
	g.prop(key, strconv.AppendInt(g.scratch(), v, 10))
}

func (g *Generator) propFloat(key string, v float64, prec int) {
	g.prop(key, strconv.AppendFloat(g.scratch(), v, 'f', prec, 64))
}

func (g *Generator) appGroup() {
	g.ev.Props = append(g.ev.Props, Field{Key: "app_group_id", Value: g.appGroupID})
}

func (g *Generator) app(d *device) {
	g.appGroup()
	g.ev.Props = append(g.ev.Props, Field{Key: "app_id", Value: g.appIDs[d.platform]})
}

func (g *Generator) dev(d *device) {
	switch d.platform {
	case platIOS:
		g.propStr("platform", "ios")
		g.propStr("os_version", iosVersions[d.hash%uint64(len(iosVersions))])
		g.propStr("device_model", iosModels[d.hash>>8%uint64(len(iosModels))])
	case platAndroid:
		g.propStr("platform", "android")
		g.propStr("os_version", androidVersions[d.hash%uint64(len(androidVersions))])
		g.propStr("device_model", androidModels[d.hash>>8%uint64(len(androidModels))])
	default:
		g.propStr("platform", "web")
		g.propStr("os_version", webBrowsers[d.hash%uint64(len(webBrowsers))])
		g.propStr("device_model", webModels[d.hash>>8%uint64(len(webModels))])
	}
}

// ad adds the advertising id of mobile devices that have one (about 60%).
func (g *Generator) ad(d *device) {
	if d.platform == platWeb || d.hash>>16%10 >= 6 {
		return
	}
	g.prop("ad_id", append(appendUUID(append(g.scratch(), '"'), mix(d.hash^0xad), d.hash), '"'))
	if d.platform == platIOS {
		g.propStr("ad_id_type", "ios_idfa")
	} else {
		g.propStr("ad_id_type", "google_ad_id")
	}
	g.propBool("ad_tracking_enabled", d.hash>>24%4 != 0)
}

// source adds the campaign (60%) or canvas (40%) the message belongs to.
func (g *Generator) source() {
	if g.rng.IntN(10) < 6 {
		g.campaignFields()
		return
	}
	g.canvasFields()
}

func (g *Generator) canvasFields() {
	c := &g.canvs[g.rng.IntN(len(g.canvs))]
	g.propStr("canvas_id", c.id)
	g.propStr("canvas_name", c.name)
	g.propStr("canvas_variation_id", c.varID)
	g.propStr("canvas_variation_name", c.varName)
	g.propStr("canvas_step_id", c.stepID)
	g.propStr("canvas_step_name", c.stepName)
}

func (g *Generator) campaignFields() {
	c := &g.camps[g.rng.IntN(len(g.camps))]
	g.propStr("campaign_id", c.id)
	g.propStr("campaign_name", c.name)
	g.propStr("message_variation_id", c.varID)
	g.propStr("message_variation_name", c.varName)
}

// message adds the fields every message event has.
func (g *Generator) message() {
	g.source()
	g.propHex24("dispatch_id")
	g.propHex24("send_id")
}

func (g *Generator) extras() {
	if g.rng.IntN(10) < 3 {
		g.propStr("message_extras", `{"offer_code":"SPRING`+strconv.Itoa(10+g.rng.IntN(40))+`","locale":"en-US"}`)
	}
}

func (g *Generator) email(e *Event, d *device) {
	b := append(g.scratch(), '"')
	if e.ExternalUserID != "" {
		b = append(b, e.ExternalUserID...)
	} else {
		b = appendHex(append(b, "guest."...), d.brazeID, 10)
	}
	b = append(b, "@example.com\""...)
	g.prop("email_address", b)
	g.propStr("ip_pool", "marketing-pool-"+strconv.Itoa(int(d.user%3)+1))
}

func (g *Generator) espFields() {
	g.propStr("esp", pick(g, esps))
	g.propStr("from_domain", "news.example.com")
}

func (g *Generator) reader(d *device) {
	g.propStr("browser", webBrowsers[d.hash%uint64(len(webBrowsers))])
	g.propStr("device_class", [...]string{"mobile", "desktop", "tablet"}[d.hash%3])
	g.propStr("device_os", [...]string{"iOS", "Android", "Windows", "macOS"}[d.hash>>4%4])
	g.propStr("mailbox_provider", mailboxes[d.user%uint64(len(mailboxes))])
	g.propStr("user_agent", userAgents[d.hash>>8%uint64(len(userAgents))])
	g.propBool("is_amp", false)
}

// Builders, one per type.

func buildCustomEvent(g *Generator, e *Event, d *device) {
	g.ad(d)
	g.app(d)
	g.dev(d)
	name := pick(g, customEvents)
	g.propStr("name", name)
	e.CustomKey = "custom_properties"
	cs := func(k, v string) { g.custom(k, jsonw.AppendString(g.scratch(), v)) }
	ci := func(k string, v int) { g.custom(k, strconv.AppendInt(g.scratch(), int64(v), 10)) }
	cf := func(k, v string) { g.custom(k, append(g.scratch(), v...)) }
	switch name {
	case "viewed_product":
		cs("product_id", pick(g, products))
		cs("category", pick(g, categories))
		cf("price", pick(g, prices))
		cs("source", "home_carousel")
	case "added_to_cart":
		cs("product_id", pick(g, products))
		ci("quantity", 1+g.rng.IntN(3))
		cf("price", pick(g, prices))
		cs("currency", pick(g, currencies))
		ci("cart_size", 1+g.rng.IntN(8))
	case "search":
		cs("query", pick(g, categories)+" "+pick(g, []string{"sale", "red", "cheap", "best", "2026"}))
		ci("results", g.rng.IntN(200))
	case "level_complete":
		ci("level", 1+g.rng.IntN(120))
		ci("score", g.rng.IntN(100000))
		g.custom("duration_s", strconv.AppendFloat(g.scratch(), float64(g.rng.IntN(60000))/100, 'f', -1, 64))
		g.custom("used_powerup", strconv.AppendBool(g.scratch(), g.rng.IntN(2) == 0))
		cs("difficulty", pick(g, []string{"easy", "normal", "hard"}))
	case "video_play":
		cs("video_id", "vid_"+strconv.Itoa(g.rng.IntN(5000)))
		ci("position_s", g.rng.IntN(3600))
		g.custom("autoplay", strconv.AppendBool(g.scratch(), g.rng.IntN(3) == 0))
	case "screen_view":
		cs("screen", pick(g, []string{"Home", "Search", "Product", "Cart", "Settings", "Profile"}))
	case "share":
		cs("channel", pick(g, []string{"whatsapp", "sms", "copy_link", "instagram"}))
		cs("content_type", "product")
	case "signup_step":
		ci("step", 1+g.rng.IntN(5))
		cs("method", pick(g, []string{"email", "apple", "google"}))
	case "article_read":
		cs("article_id", "a-"+strconv.Itoa(g.rng.IntN(90000)))
		g.custom("tags", append(g.scratch(), `["news","tech","ai"]`...))
		ci("read_pct", g.rng.IntN(101))
		cs("author", "Jane Doe")
	case "app_rating":
		ci("rating", 1+g.rng.IntN(5))
		cs("comment", "Great app, but the checkout could be faster on older phones.")
	}
}

func buildPurchase(g *Generator, e *Event, d *device) {
	g.ad(d)
	g.app(d)
	g.dev(d)
	g.propStr("product_id", pick(g, products))
	g.prop("price", append(g.scratch(), pick(g, prices)...))
	g.propStr("currency", pick(g, currencies))
	e.CustomKey = "purchase_properties"
	if g.rng.IntN(3) > 0 {
		g.custom("size", jsonw.AppendString(g.scratch(), pick(g, []string{"S", "M", "L", "42", "1kg"})))
		g.custom("color", jsonw.AppendString(g.scratch(), pick(g, []string{"red", "black", "white"})))
		g.custom("gift", strconv.AppendBool(g.scratch(), g.rng.IntN(5) == 0))
	}
}

func buildSession(g *Generator, _ *Event, d *device) {
	g.app(d)
	g.dev(d)
	g.propUUID("session_id")
}

func buildSessionEnd(g *Generator, e *Event, d *device) {
	buildSession(g, e, d)
	g.propFloat("duration", float64(g.rng.IntN(180000))/100, -1)
}

func buildLocation(g *Generator, _ *Event, d *device) {
	g.ad(d)
	g.app(d)
	g.dev(d)
	g.propFloat("latitude", float64(g.rng.IntN(1800000))/10000-90, 4)
	g.propFloat("longitude", float64(g.rng.IntN(3600000))/10000-180, 4)
	g.propFloat("altitude", float64(g.rng.IntN(3000)), 1)
	g.propFloat("ll_accuracy", float64(5+g.rng.IntN(60)), 1)
	g.propFloat("alt_accuracy", float64(3+g.rng.IntN(30)), 1)
}

func buildUninstall(g *Generator, _ *Event, d *device) { g.app(d) }

func buildGlobalStateChange(g *Generator, e *Event, d *device) {
	g.app(d)
	g.propStr("channel", "email")
	g.email(e, d)
	g.propStr("state_change_source", pick(g, []string{"Subscription Center", "REST API", "SDK"}))
	g.propStr("subscription_status", pick(g, []string{"Subscribed", "Unsubscribed", "Opted In"}))
}

func pushToken(g *Generator, d *device) {
	b := append(g.scratch(), '"')
	switch d.platform {
	case platIOS:
		b = appendHex(appendHex(appendHex(appendHex(b, d.hash, 16), mix(d.hash), 16), mix(d.hash+1), 16), mix(d.hash+2), 16)
	case platAndroid:
		b = appendHex(append(appendHex(b, d.hash, 11), ":APA91b"...), mix(d.hash), 16)
		for i := uint64(0); i < 8; i++ {
			b = appendHex(b, mix(d.hash+i+3), 16)
		}
	default:
		b = appendHex(append(b, "https://fcm.googleapis.com/fcm/send/"...), d.hash, 16)
	}
	g.prop("push_token", append(b, '"'))
}

func platformOnly(g *Generator, d *device) {
	g.propStr("platform", [...]string{"ios", "android", "web"}[d.platform])
}

func buildPushSend(g *Generator, _ *Event, d *device) {
	g.ad(d)
	g.app(d)
	g.message()
	g.propStr("locale_key", "en-us")
	g.extras()
	platformOnly(g, d)
	pushToken(g, d)
}

func buildPushOpen(g *Generator, _ *Event, d *device) {
	g.ad(d)
	g.app(d)
	g.message()
	g.dev(d)
}

func buildPushBounce(g *Generator, _ *Event, d *device) {
	g.ad(d)
	g.app(d)
	g.message()
	platformOnly(g, d)
	pushToken(g, d)
}

func buildEmailSend(g *Generator, e *Event, d *device) {
	g.appGroup()
	g.message()
	g.email(e, d)
	g.extras()
}

func buildEmailDelivery(g *Generator, e *Event, d *device) {
	g.appGroup()
	g.message()
	g.email(e, d)
	g.espFields()
}

func buildEmailOpen(g *Generator, e *Event, d *device) {
	buildEmailDelivery(g, e, d)
	g.reader(d)
	g.propStr("machine_open", pick(g, []string{"true", "false", "false"}))
}

func buildEmailClick(g *Generator, e *Event, d *device) {
	buildEmailDelivery(g, e, d)
	g.reader(d)
	l := g.rng.IntN(6)
	g.propStr("url", "https://shop.example.com/collections/spring-2026?utm_source=braze&utm_medium=email&utm_campaign=c"+strconv.Itoa(l))
	g.propStr("link_id", "link_"+strconv.Itoa(l))
	g.propStr("link_alias", [...]string{"hero_cta", "footer", "logo", "product_1", "product_2", "unsubscribe"}[l])
	g.propBool("is_suspected_bot_click", false)
}

func buildEmailBounce(g *Generator, e *Event, d *device) {
	buildEmailDelivery(g, e, d)
	g.propStr("bounce_reason", "550 5.1.1 The email account that you tried to reach does not exist")
	g.propBool("is_drop", false)
}

func buildEmailUnsubscribe(g *Generator, e *Event, d *device) {
	g.appGroup()
	g.message()
	g.email(e, d)
}

func buildInAppImpression(g *Generator, _ *Event, d *device) {
	g.ad(d)
	g.app(d)
	g.message()
	g.propUUID("card_id")
	g.propStr("locale_key", "en-us")
	g.extras()
	g.dev(d)
}

func buildInAppClick(g *Generator, e *Event, d *device) {
	buildInAppImpression(g, e, d)
	g.propStr("button_id", strconv.Itoa(g.rng.IntN(2)))
}

func buildContentCardImpression(g *Generator, _ *Event, d *device) {
	g.ad(d)
	g.app(d)
	g.message()
	g.propUUID("card_id")
	g.dev(d)
}

func phone(g *Generator, key string, d *device) {
	b := strconv.AppendUint(append(g.scratch(), `"+1555`...), 10000000+d.user%10000000, 10)
	g.prop(key, append(b, '"'))
}

func buildSMSSend(g *Generator, _ *Event, d *device) {
	g.appGroup()
	g.message()
	g.propStr("category", "marketing")
	g.extras()
	g.propUUID("subscription_group_id")
	phone(g, "to_phone_number", d)
}

func buildSMSDelivery(g *Generator, _ *Event, d *device) {
	g.appGroup()
	g.message()
	g.propUUID("subscription_group_id")
	phone(g, "to_phone_number", d)
	g.propStr("from_phone_number", "+15550100200")
	g.propBool("is_sms_fallback", false)
}

func buildWebhookSend(g *Generator, _ *Event, _ *device) {
	g.appGroup()
	g.message()
	g.extras()
}

func buildCampaignConversion(g *Generator, _ *Event, d *device) {
	g.app(d)
	g.campaignFields()
	g.propStr("conversion_behavior", `{"type":"perform_custom_event","custom_event_name":"added_to_cart","window":86400}`)
	g.propInt("conversion_behavior_index", int64(g.rng.IntN(4)))
	g.propHex24("dispatch_id")
	g.propHex24("send_id")
}

func buildCanvasEntry(g *Generator, _ *Event, _ *device) {
	g.appGroup()
	g.canvasFields()
	g.propBool("in_control_group", g.rng.IntN(10) == 0)
}
