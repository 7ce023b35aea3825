// Package cohort brings Amplitude behavioural cohorts into Braze.
//
// It registers two Benthos components:
//
//   - the input amplitude_cohort, which on a schedule lists cohorts through
//     Amplitude's Behavioral Cohorts API, downloads those whose lastComputed
//     changed (request, poll, download a CSV), and emits the membership delta
//     since the last delivered sync. The sync state lives in a store file
//     (plugins/store): the downloaded membership is kept as a pending change
//     set, each delivered message is recorded, and the membership becomes the
//     delivered one once every message was acked, so a restart resumes the
//     change set where it stopped (syncstate.go).
//   - the output braze_cohort, which writes membership changes to Braze, either
//     through /users/track (a custom attribute array, any customer) or through
//     the partner cohort import API (for holders of a partner key).
//
// Both speak one message shape, a membership change (see [Change]):
//
//	{"cohort_id":"abc1","cohort_name":"Churn risk","id_type":"external_id",
//	 "added":["u1","u2"],"removed":["u9"]}
//
// Amplitude's real-time cohort webhooks can feed the same output from an
// http_server pipeline (config/amplitude_cohort_webhook_to_braze.yaml).
package cohort
