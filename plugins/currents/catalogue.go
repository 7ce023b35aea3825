package currents

// NameSource says where the Amplitude base name of an event type comes from.
type NameSource string

// The sources of Amplitude base names, in order of authority.
const (
	// SourceGlossary: the Amplitude tab of Braze's Currents event glossary
	// (https://www.braze.com/docs/user_guide/data/distribution/braze_currents/event_glossary/message_engagement_events/
	// and …/customer_behavior_events/), which documents what Braze's
	// connector sends today.
	SourceGlossary NameSource = "glossary"
	// SourceAmplitudePage: only Braze's older "Amplitude for Currents" page
	// (https://www.braze.com/docs/partners/amplitude_for_currents/) names the
	// type; the glossary has no Amplitude tab for it (retired News Feed types).
	SourceAmplitudePage NameSource = "amplitude_page"
	// SourceDerived: Braze documents no usable Amplitude name (storage-only,
	// beta or retired types, or a glossary header without its channel word);
	// the name follows the same "<Channel> <Action>" style and can be
	// overridden with event_names. Note says why.
	SourceDerived NameSource = "derived"
)

// NameSources lists every NameSource, in order of authority.
var NameSources = []NameSource{SourceGlossary, SourceAmplitudePage, SourceDerived}

// Naming selects the spelling used where Braze's two documents disagree.
type Naming string

// Namings: the presets of the braze_to_amplitude `naming` field.
const (
	// NamingGlossary sends the glossary's names (the default: what Braze's
	// connector documents today).
	NamingGlossary Naming = "glossary"
	// NamingAmplitudePage sends the older Amplitude page's spelling for the
	// types where it differs (EventType.PageName), for dashboards built on it.
	NamingAmplitudePage Naming = "amplitude_page"
)

// Kind tells the mapper which special fields an event type carries.
type Kind uint8

// Event kinds.
const (
	// KindRegular events carry only Braze fields.
	KindRegular Kind = iota
	// KindCustom is users.behaviors.CustomEvent: named after its `name`
	// field, its properties become "[Custom event property] <key>".
	KindCustom
	// KindPurchase is users.behaviors.Purchase: top-level productId, price
	// and quantity, its properties become "[Purchase property] <key>".
	KindPurchase
)

// rule flags adjust the generic event_properties rule for one event type, as
// the glossary's Amplitude tabs show it (see docs/event-names.md).
type rule uint8

const (
	// keepTimezone keeps the user's timezone in event_properties (Braze
	// drops it for most types).
	keepTimezone rule = 1 << iota
	// cardID renames the Avro field content_card_id to card_id.
	cardID
	// noPhone leaves phone_number out.
	noPhone
	// topProductID moves product_id out of event_properties to Amplitude's
	// top-level productId (the glossary's Amplitude tab of
	// users.messages.whatsapp.InboundReceive).
	topProductID
)

// EventType is one row of the catalogue: a Currents event type and the
// Amplitude event it becomes.
type EventType struct {
	// Type is the Currents event type, e.g. "users.messages.email.Open".
	Type string
	// Name is the Amplitude base name, before the event prefix, e.g.
	// "Email Open" (exported as "[Appboy] Email Open").
	Name string
	// Source says which Braze document Name comes from.
	Source NameSource
	// PageName is the spelling of Braze's older "Amplitude for Currents"
	// page where it differs from the glossary's Name (sent with
	// `naming: amplitude_page`); empty where they agree.
	PageName string
	// Note says why a derived Name was chosen (SourceDerived only).
	Note string
	// Kind marks custom events and purchases.
	Kind  Kind
	rules rule
}

// Currents event type names the mapper treats specially.
const (
	TypeCustomEvent = "users.behaviors.CustomEvent"
	TypePurchase    = "users.behaviors.Purchase"
)

// Notes of the derived names.
const (
	noteStorage  = "storage-only record: no Amplitude tab in the glossary, excluded by default"
	noteRetired  = "retired type: neither the glossary nor the Amplitude page names it"
	noteRetry    = "Message Prioritization beta: no section in the glossary"
	noteNoTab    = "the glossary section has no Amplitude tab"
	noteNoPrefix = "the glossary's Amplitude header is the bare action (\"Abort\", \"Send\"), the same for LINE and RCS"
)

// NameFor returns the Amplitude base name of et under a naming preset.
func (et EventType) NameFor(n Naming) string {
	if n == NamingAmplitudePage && et.PageName != "" {
		return et.PageName
	}
	return et.Name
}

// catalogue lists every Currents event type of the Braze sample repository
// (current and removed schemas). Names follow the Amplitude tab of Braze's
// Currents event glossary
// (https://github.com/braze-inc/braze-docs/tree/develop/_docs/_user_guide/data/distribution/braze_currents/event_glossary,
// read at message_engagement_events.md 01a61b7b and
// customer_behavior_events.md 0aa67591), else Braze's older Amplitude for Currents page; PageName keeps
// the page's spelling where the two disagree.
var catalogue = []EventType{
	// Storage-only and agent events: no Amplitude tab in the glossary.
	{Type: "agentconsole.AgentExecuted", Name: "Agent Executed", Source: SourceDerived, Note: noteStorage},
	{Type: "agentconsole.ToolInvocation", Name: "Agent Tool Invocation", Source: SourceDerived, Note: noteStorage},
	{Type: "users.RandomBucketNumberUpdate", Name: "Random Bucket Number Update", Source: SourceDerived, Note: noteStorage},
	{Type: "users.UserDeleteRequest", Name: "User Delete Request", Source: SourceDerived, Note: noteStorage},
	{Type: "users.UserOrphan", Name: "User Orphan", Source: SourceDerived, Note: noteStorage},
	{Type: "users.profile.Update", Name: "User Profile Update", Source: SourceDerived, Note: noteStorage},

	// Customer behaviour events.
	// Custom events are named "<custom prefix><name>": the prefix rule is
	// the Amplitude page's (the glossary's header shows a placeholder,
	// "[Braze Custom Event]").
	{Type: TypeCustomEvent, Name: "Custom Event", Source: SourceAmplitudePage, Kind: KindCustom},
	{Type: TypePurchase, Name: "Purchase", Source: SourceGlossary, Kind: KindPurchase},
	{Type: "users.behaviors.InstallAttribution", Name: "Install Attribution", Source: SourceGlossary},
	{Type: "users.behaviors.Location", Name: "Location", Source: SourceGlossary},
	{Type: "users.behaviors.Uninstall", Name: "Uninstall", Source: SourceGlossary},
	{Type: "users.behaviors.UpgradedApp", Name: "Upgraded App", Source: SourceDerived, Note: noteRetired},
	{Type: "users.behaviors.app.FirstSession", Name: "First Session", Source: SourceGlossary},
	{Type: "users.behaviors.app.SessionStart", Name: "Session Start", Source: SourceGlossary},
	{Type: "users.behaviors.app.SessionEnd", Name: "Session End", Source: SourceGlossary},
	{Type: "users.behaviors.app.NewsFeedImpression", Name: "News Feed Impression", Source: SourceAmplitudePage},
	{Type: "users.behaviors.liveactivity.PushToStartTokenChange", Name: "Live Activity Push To Start Token Change", Source: SourceGlossary},
	{Type: "users.behaviors.liveactivity.UpdateTokenChange", Name: "Live Activity Update Token Change", Source: SourceGlossary},
	{Type: "users.behaviors.pushnotification.TokenStateChange", Name: "Push Notification Token State Change", Source: SourceGlossary},
	{Type: "users.behaviors.subscription.GlobalStateChange", Name: "Global Subscription State Change", Source: SourceGlossary, rules: keepTimezone},
	{Type: "users.behaviors.subscriptiongroup.StateChange", Name: "Subscription Group State Change", Source: SourceGlossary, rules: keepTimezone | noPhone},

	// Campaigns and Canvases.
	{Type: "users.campaigns.Abort", Name: "Campaign Abort", Source: SourceDerived, Note: noteRetired},
	{Type: "users.campaigns.Conversion", Name: "Campaign Conversion", Source: SourceGlossary, PageName: "Campaign Conversion Event"},
	{Type: "users.campaigns.EnrollInControl", Name: "Campaign Control Group Enrollment", Source: SourceGlossary},
	{Type: "users.canvas.Abort", Name: "Canvas Abort", Source: SourceDerived, Note: noteRetired},
	{Type: "users.canvas.Conversion", Name: "Canvas Conversion", Source: SourceGlossary, PageName: "Canvas Conversion Event"},
	{Type: "users.canvas.Entry", Name: "Canvas Entry", Source: SourceGlossary},
	{Type: "users.canvas.costep.Send", Name: "Content Optimizer Step Send", Source: SourceDerived, Note: noteNoTab},
	{Type: "users.canvas.exit.MatchedAudience", Name: "Exit Match Audience", Source: SourceGlossary},
	{Type: "users.canvas.exit.PerformedEvent", Name: "Exit Perform Event", Source: SourceGlossary},
	{Type: "users.canvas.experimentstep.Conversion", Name: "Experiment Step Conversion", Source: SourceGlossary},
	{Type: "users.canvas.experimentstep.SplitEntry", Name: "Experiment Split Entry", Source: SourceGlossary},
	{Type: "users.canvasstep.Progression", Name: "Canvas Step Progression", Source: SourceGlossary},

	// Banners.
	{Type: "users.messages.banner.Abort", Name: "Banner Abort", Source: SourceGlossary, rules: keepTimezone},
	{Type: "users.messages.banner.Click", Name: "Banner Click", Source: SourceGlossary, rules: keepTimezone},
	{Type: "users.messages.banner.Dismiss", Name: "Banner Dismiss", Source: SourceDerived, Note: noteNoTab, rules: keepTimezone},
	{Type: "users.messages.banner.Impression", Name: "Banner Impression", Source: SourceGlossary, rules: keepTimezone},

	// Content Cards.
	{Type: "users.messages.contentcard.Abort", Name: "Content Card Abort", Source: SourceGlossary, rules: cardID},
	{Type: "users.messages.contentcard.Click", Name: "Content Card Click", Source: SourceGlossary, rules: cardID},
	{Type: "users.messages.contentcard.Dismiss", Name: "Content Card Dismiss", Source: SourceGlossary, rules: cardID},
	{Type: "users.messages.contentcard.Impression", Name: "Content Card Impression", Source: SourceGlossary, rules: cardID},
	{Type: "users.messages.contentcard.Send", Name: "Content Card Send", Source: SourceGlossary, rules: cardID},

	// Email.
	{Type: "users.messages.email.Abort", Name: "Email Abort", Source: SourceGlossary},
	{Type: "users.messages.email.Bounce", Name: "Email Bounce", Source: SourceGlossary},
	{Type: "users.messages.email.Click", Name: "Email Click", Source: SourceGlossary},
	{Type: "users.messages.email.Deferral", Name: "Email Deferral", Source: SourceGlossary, rules: keepTimezone},
	{Type: "users.messages.email.Delivery", Name: "Email Delivery", Source: SourceGlossary},
	{Type: "users.messages.email.MarkAsSpam", Name: "Email Mark As Spam", Source: SourceGlossary},
	{Type: "users.messages.email.Open", Name: "Email Open", Source: SourceGlossary},
	{Type: "users.messages.email.Retry", Name: "Email Retry", Source: SourceDerived, Note: noteRetry},
	{Type: "users.messages.email.Send", Name: "Email Send", Source: SourceGlossary},
	{Type: "users.messages.email.SoftBounce", Name: "Email Soft Bounce", Source: SourceGlossary},
	{Type: "users.messages.email.Unsubscribe", Name: "Email Unsubscribe", Source: SourceGlossary},

	// Feature flags and in-app messages.
	{Type: "users.messages.featureflag.Impression", Name: "Feature Flag Experiment Impression", Source: SourceGlossary, rules: keepTimezone},
	{Type: "users.messages.inappmessage.Abort", Name: "In-App Message Abort", Source: SourceGlossary},
	{Type: "users.messages.inappmessage.Click", Name: "In-App Message Click", Source: SourceGlossary, PageName: "In-app message Click"},
	{Type: "users.messages.inappmessage.Impression", Name: "In-App Message Impression", Source: SourceGlossary, PageName: "In-app message Impression"},

	// LINE (the glossary headers lack the channel word for three of them).
	{Type: "users.messages.line.Abort", Name: "LINE Abort", Source: SourceDerived, Note: noteNoPrefix, rules: keepTimezone},
	{Type: "users.messages.line.Click", Name: "LINE Click", Source: SourceDerived, Note: noteNoPrefix, rules: keepTimezone},
	{Type: "users.messages.line.InboundReceive", Name: "LINE Inbound Receive", Source: SourceGlossary, rules: keepTimezone},
	{Type: "users.messages.line.Retry", Name: "LINE Retry", Source: SourceDerived, Note: noteRetry, rules: keepTimezone},
	{Type: "users.messages.line.Send", Name: "LINE Send", Source: SourceDerived, Note: noteNoPrefix, rules: keepTimezone},

	// Live Activities.
	{Type: "users.messages.liveactivity.Outcome", Name: "Live Activity Outcome", Source: SourceGlossary},
	{Type: "users.messages.liveactivity.Send", Name: "Live Activity Send", Source: SourceGlossary},

	// News Feed (retired).
	{Type: "users.messages.newsfeedcard.Abort", Name: "News Feed Card Abort", Source: SourceDerived, Note: noteRetired},
	{Type: "users.messages.newsfeedcard.Click", Name: "News Feed Card Click", Source: SourceAmplitudePage},
	{Type: "users.messages.newsfeedcard.Impression", Name: "News Feed Card Impression", Source: SourceAmplitudePage},

	// Push.
	{Type: "users.messages.pushnotification.Abort", Name: "Push Notification Abort", Source: SourceGlossary},
	{Type: "users.messages.pushnotification.Bounce", Name: "Push Notification Bounce", Source: SourceGlossary},
	{Type: "users.messages.pushnotification.InfluencedOpen", Name: "Push Notification Influenced Open", Source: SourceDerived, Note: noteRetired},
	{Type: "users.messages.pushnotification.IosForeground", Name: "Push Notification iOS Foreground Open", Source: SourceGlossary},
	{Type: "users.messages.pushnotification.Open", Name: "Push Notification Open", Source: SourceGlossary},
	{Type: "users.messages.pushnotification.Retry", Name: "Push Notification Retry", Source: SourceDerived, Note: noteRetry},
	{Type: "users.messages.pushnotification.Send", Name: "Push Notification Send", Source: SourceGlossary},

	// RCS (the glossary headers lack the channel word).
	{Type: "users.messages.rcs.Abort", Name: "RCS Abort", Source: SourceDerived, Note: noteNoPrefix, rules: keepTimezone},
	{Type: "users.messages.rcs.Click", Name: "RCS Click", Source: SourceDerived, Note: noteNoPrefix, rules: keepTimezone},
	{Type: "users.messages.rcs.Delivery", Name: "RCS Delivery", Source: SourceDerived, Note: noteNoPrefix, rules: keepTimezone},
	{Type: "users.messages.rcs.InboundReceive", Name: "RCS Inbound Receive", Source: SourceDerived, Note: noteNoPrefix, rules: keepTimezone},
	{Type: "users.messages.rcs.Read", Name: "RCS Read", Source: SourceDerived, Note: noteNoPrefix, rules: keepTimezone},
	{Type: "users.messages.rcs.Rejection", Name: "RCS Rejection", Source: SourceDerived, Note: noteNoPrefix, rules: keepTimezone},
	{Type: "users.messages.rcs.Send", Name: "RCS Send", Source: SourceDerived, Note: noteNoPrefix, rules: keepTimezone},

	// SMS.
	{Type: "users.messages.sms.Abort", Name: "SMS Abort", Source: SourceGlossary},
	{Type: "users.messages.sms.CarrierSend", Name: "SMS Carrier Send", Source: SourceGlossary, PageName: "SMS Send To Carrier"},
	{Type: "users.messages.sms.Delivery", Name: "SMS Delivery", Source: SourceGlossary},
	{Type: "users.messages.sms.DeliveryFailure", Name: "SMS Delivery Failure", Source: SourceGlossary},
	{Type: "users.messages.sms.InboundReceive", Name: "SMS Inbound Received", Source: SourceGlossary},
	{Type: "users.messages.sms.Rejection", Name: "SMS Rejection", Source: SourceGlossary},
	{Type: "users.messages.sms.Retry", Name: "SMS Retry", Source: SourceDerived, Note: noteRetry},
	{Type: "users.messages.sms.Send", Name: "SMS Send", Source: SourceGlossary},
	{Type: "users.messages.sms.ShortLinkClick", Name: "SMS Short Link Click", Source: SourceGlossary},

	// Webhooks.
	{Type: "users.messages.webhook.Abort", Name: "Webhook Abort", Source: SourceGlossary},
	{Type: "users.messages.webhook.Failure", Name: "Webhook Failure", Source: SourceGlossary},
	{Type: "users.messages.webhook.Retry", Name: "Webhook Retry", Source: SourceDerived, Note: noteRetry},
	{Type: "users.messages.webhook.Send", Name: "Webhook Send", Source: SourceGlossary},

	// WhatsApp.
	{Type: "users.messages.whatsapp.Abort", Name: "WhatsApp Abort", Source: SourceGlossary},
	{Type: "users.messages.whatsapp.Click", Name: "WhatsApp Tracked Link Click", Source: SourceGlossary, rules: keepTimezone},
	{Type: "users.messages.whatsapp.Delivery", Name: "WhatsApp Delivery", Source: SourceGlossary},
	{Type: "users.messages.whatsapp.Failure", Name: "WhatsApp Failure", Source: SourceGlossary},
	{Type: "users.messages.whatsapp.InboundReceive", Name: "WhatsApp Inbound Received", Source: SourceGlossary, rules: topProductID},
	{Type: "users.messages.whatsapp.Read", Name: "WhatsApp Read", Source: SourceGlossary},
	{Type: "users.messages.whatsapp.Retry", Name: "WhatsApp Retry", Source: SourceDerived, Note: noteRetry},
	{Type: "users.messages.whatsapp.Send", Name: "WhatsApp Send", Source: SourceGlossary},
}

// Catalogue returns a copy of the built-in event table: every Currents event
// type this package knows, with its Amplitude base name.
func Catalogue() []EventType {
	return append([]EventType(nil), catalogue...)
}

// floatFields are the Avro `float` (32-bit) fields of the Currents schemas:
// their values are written with the shortest float32 representation so that
// 3.140000104904175 (a float32 widened by the Avro decoder) becomes 3.14.
func isFloatField(key string) bool {
	switch key {
	case "price", "latitude", "longitude", "altitude", "ll_accuracy", "alt_accuracy", "duration":
		return true
	}
	return false
}
