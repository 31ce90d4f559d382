//! Alerting: channels (instances of alert-channel plugins with their settings), rules, history
//! and "send test".

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use infrapilot_alerts::engine::{open_channel_secrets, seal_channel_secrets};
use infrapilot_alerts::{RuleKind, Severity, TestOutcome};
use infrapilot_plugin_host::settings;
use infrapilot_plugin_runtime::HookError;
use infrapilot_store::{AlertChannelRow, AlertRuleRow, NewAlertRule};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::audit_log::{self, Actor};
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, integral_floats_to_integers};
use crate::state::AppState;
use crate::validate;

/// Longest cooldown a rule may have (a week).
pub(crate) const MAX_COOLDOWN_SECONDS: u32 = 7 * 86_400;
/// Channels one rule may notify.
pub(crate) const MAX_RULE_CHANNELS: usize = 20;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannelRequest {
    /// The alert-channel plugin's id, e.g. `infrapilot.webhook`.
    #[schema(pattern = "^[a-z0-9.-]{3,64}$")]
    pub plugin: String,
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: String,
    /// Settings per the plugin's JSON Schema; secret (`writeOnly`) fields are stored sealed and
    /// never returned.
    #[schema(value_type = Object)]
    pub settings: Value,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateChannelRequest {
    pub name: Option<String>,
    /// Replaces the settings; a secret field left out keeps its stored value, `null` clears it.
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Value>,
    pub enabled: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct ChannelDto {
    pub id: String,
    pub plugin: String,
    pub name: String,
    /// The non-secret settings.
    #[schema(value_type = Object)]
    pub settings: Value,
    /// Secret fields that have a value (their values are write-only).
    pub secrets_set: Vec<String>,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct TestResultDto {
    pub delivered: bool,
    /// What the channel reported, or why it failed.
    pub detail: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRuleRequest {
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: String,
    /// `container_crashed`, `restart_loop`, `cpu_high`, `memory_high`, `node_offline`,
    /// `certificate_expiring`, `log_error_spike`, `proxy_error_rate` or `policy_engine_failed`.
    #[schema(
        pattern = "^(container_crashed|restart_loop|cpu_high|memory_high|node_offline|certificate_expiring|log_error_spike|proxy_error_rate|policy_engine_failed)$"
    )]
    pub kind: String,
    /// By kind: `container` (exact name filter), `restarts` and `window_seconds` (restart_loop),
    /// `threshold_percent` and `duration_seconds` (cpu_high, memory_high), `days`
    /// (certificate_expiring, default 14), `min_errors`, `factor` and `baseline_minutes`
    /// (log_error_spike), `proxy_host`, `threshold_percent`, `window_seconds` and
    /// `min_requests` (proxy_error_rate).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Value,
    /// Only this node (all nodes when absent).
    pub agent_id: Option<String>,
    /// `info`, `warning` (default) or `critical`.
    #[schema(pattern = "^(info|warning|critical)$")]
    pub severity: Option<String>,
    /// Minimum seconds between two notifications for the same target (default 300).
    pub cooldown_seconds: Option<u32>,
    pub channel_ids: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRuleRequest {
    pub enabled: bool,
}

#[derive(Serialize, ToSchema)]
pub struct RuleDto {
    pub id: String,
    pub name: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub params: Value,
    pub agent_id: Option<String>,
    pub severity: String,
    pub cooldown_seconds: i64,
    pub channel_ids: Vec<String>,
    pub enabled: bool,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryDto {
    pub channel_id: String,
    pub channel_name: Option<String>,
    /// `firing` or `resolved`.
    pub transition: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub detail: Option<String>,
    pub updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct AlertEventDto {
    pub id: String,
    pub rule_id: String,
    pub rule_name: Option<String>,
    pub kind: Option<String>,
    /// `agent:<id>` or `container:<agent id>/<name>`.
    pub target: String,
    /// `firing` or `resolved`.
    pub state: String,
    pub severity: String,
    pub summary: String,
    /// Occurrences folded into this event within its cooldown.
    pub occurrences: i64,
    pub fired_at: String,
    pub resolved_at: Option<String>,
    pub deliveries: Vec<DeliveryDto>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Events fired before this RFC 3339 time (for paging).
    #[param(format = DateTime)]
    pub before: Option<String>,
    /// 1–500, default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// A channel for an admin: its plain settings and which secrets are set.
fn channel_dto(row: AlertChannelRow, state: &AppState) -> ChannelDto {
    let secrets_set = open_channel_secrets(state.secrets(), &row)
        .map(|m| {
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k)
                .collect()
        })
        .unwrap_or_default();
    ChannelDto {
        settings: serde_json::from_str(&row.settings).unwrap_or_else(|_| json!({})),
        secrets_set,
        id: row.id,
        plugin: row.plugin_id,
        name: row.name,
        enabled: row.enabled,
        created_at: validate::rfc3339(row.created_at),
        updated_at: validate::rfc3339(row.updated_at),
    }
}

/// A channel as `principal` may see it: below admin (who cannot edit channels) no settings at
/// all, since plain settings can still say where alerts go.
fn channel_for(row: AlertChannelRow, state: &AppState, principal: &Principal) -> ChannelDto {
    let mut dto = channel_dto(row, state);
    if !principal.role.at_least(infrapilot_identity::Role::Admin) {
        dto.settings = json!({});
        dto.secrets_set.clear();
    }
    dto
}

fn rule_dto(r: AlertRuleRow) -> RuleDto {
    RuleDto {
        params: serde_json::from_str(&r.params).unwrap_or_else(|_| json!({})),
        channel_ids: serde_json::from_str(&r.channel_ids).unwrap_or_default(),
        id: r.id,
        name: r.name,
        kind: r.kind,
        agent_id: r.agent_id,
        severity: r.severity,
        cooldown_seconds: r.cooldown_seconds,
        enabled: r.enabled,
        created_at: validate::rfc3339(r.created_at),
    }
}

/// A plugin's verdict on settings, as an API error naming `settings`.
fn hook_error(e: HookError) -> ApiError {
    match e {
        HookError::Plugin(_) => ApiError::invalid("settings", e.to_string()),
        other => ApiError::new(StatusCode::BAD_GATEWAY, "plugin_failed", other.to_string())
            .with_field("plugin"),
    }
}

/// Checks settings against the plugin's schema and its own `validate`, and seals the secrets.
/// Returns (plain settings JSON, sealed secrets).
async fn checked_settings(
    state: &AppState,
    org_id: &infrapilot_store::OrgId,
    plugin_id: &str,
    channel_id: &str,
    settings_value: &Value,
) -> ApiResult<(String, Option<Vec<u8>>)> {
    let extensions = state.extensions()?;
    let (plugin, manifest) = extensions
        .plugins
        .alert_channel(plugin_id)
        .await
        .map_err(|e| ApiError::from(e).with_field("plugin"))?;
    if !settings_value.is_object() {
        return Err(ApiError::invalid("settings", "settings must be an object"));
    }
    settings::validate(&manifest.settings_schema, settings_value)
        .map_err(|e| ApiError::invalid(&e.field, e.message))?;
    let split = settings::split(settings_value, &manifest.secret_fields());
    let sealed = seal_channel_secrets(state.secrets(), channel_id, &split.secrets)
        .map_err(ApiError::internal)?;
    let plain = Value::Object(split.plain).to_string();
    let probe = AlertChannelRow {
        id: channel_id.to_owned(),
        plugin_id: plugin_id.to_owned(),
        name: String::new(),
        settings: plain.clone(),
        secrets: sealed.clone(),
        enabled: true,
        created_at: 0,
        updated_at: 0,
    };
    let invocation = extensions
        .alerts
        .invocation(org_id, &probe)
        .map_err(ApiError::internal)?;
    plugin.validate(&invocation).await.map_err(hook_error)?;
    Ok((plain, sealed))
}

#[utoipa::path(get, path = "/api/v1/alerts/channels", operation_id = "list_alert_channels", tag = "alerts",
    responses((status = 200, body = Vec<ChannelDto>)), security(("bearer" = [])))]
pub async fn list_channels(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<Vec<ChannelDto>>> {
    let mut tx = state.store().read(&principal.org_id).await?;
    let rows = tx.list_alert_channels().await?;
    tx.commit().await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| channel_for(r, &state, &principal))
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/alerts/channels", operation_id = "create_alert_channel", tag = "alerts",
    request_body = CreateChannelRequest,
    responses((status = 201, body = ChannelDto), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_channel(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    ApiJson(req): ApiJson<CreateChannelRequest>,
) -> ApiResult<(StatusCode, Json<ChannelDto>)> {
    let name = validate::label("name", &req.name)?;
    let plugin = req.plugin.trim();
    if plugin.is_empty() || plugin.len() > 64 {
        return Err(ApiError::invalid("plugin", "plugin must be a plugin id"));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let (plain, sealed) =
        checked_settings(&state, &principal.org_id, plugin, &id, &req.settings).await?;
    let mut tx = state.store().write(&principal.org_id).await?;
    tx.insert_alert_channel(&id, plugin, &name, &plain, sealed.as_deref())
        .await
        .map_err(|e| {
            if e.is_unique_violation() {
                ApiError::conflict(format!("a channel named {name:?} exists")).with_field("name")
            } else {
                e.into()
            }
        })?;
    audit_log::success(
        &mut tx,
        &Actor::user(&principal),
        &client.ip,
        "alert_channel.create",
        &format!("alert_channel:{id}"),
        json!({"plugin": plugin, "name": name}),
    )
    .await?;
    let row = tx
        .alert_channel(&id)
        .await?
        .ok_or_else(|| ApiError::internal("created channel vanished"))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(channel_dto(row, &state))))
}

async fn channel_row(
    state: &AppState,
    org_id: &infrapilot_store::OrgId,
    id: &str,
) -> ApiResult<AlertChannelRow> {
    let id = validate::uuid("id", id)?;
    let mut tx = state.store().read(org_id).await?;
    let row = tx.alert_channel(&id).await?;
    tx.commit().await?;
    row.ok_or_else(|| ApiError::not_found("id", "no such channel"))
}

#[utoipa::path(get, path = "/api/v1/alerts/channels/{id}", operation_id = "get_alert_channel", tag = "alerts",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = ChannelDto), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_channel(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<ChannelDto>> {
    let row = channel_row(&state, &principal.org_id, &id).await?;
    Ok(Json(channel_for(row, &state, &principal)))
}

#[utoipa::path(patch, path = "/api/v1/alerts/channels/{id}", operation_id = "update_alert_channel", tag = "alerts",
    params(("id" = uuid::Uuid, Path)), request_body = UpdateChannelRequest,
    responses((status = 200, body = ChannelDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_channel(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateChannelRequest>,
) -> ApiResult<Json<ChannelDto>> {
    let row = channel_row(&state, &principal.org_id, &id).await?;
    let name = match &req.name {
        Some(n) => validate::label("name", n)?,
        None => row.name.clone(),
    };
    let (plain, sealed) = match &req.settings {
        None => (row.settings.clone(), row.secrets.clone()),
        Some(new) => {
            let Some(new_object) = new.as_object() else {
                return Err(ApiError::invalid("settings", "settings must be an object"));
            };
            // Secret fields left out keep their stored values; null clears them.
            let mut merged: Map<String, Value> = new_object.clone();
            let stored = open_channel_secrets(state.secrets(), &row).map_err(ApiError::internal)?;
            for (k, v) in stored {
                if !merged.contains_key(&k) {
                    merged.insert(k, v);
                }
            }
            merged.retain(|_, v| !v.is_null());
            checked_settings(
                &state,
                &principal.org_id,
                &row.plugin_id,
                &row.id,
                &Value::Object(merged),
            )
            .await?
        }
    };
    let enabled = req.enabled.unwrap_or(row.enabled);
    let mut tx = state.store().write(&principal.org_id).await?;
    tx.update_alert_channel(&row.id, &name, &plain, sealed.as_deref(), enabled)
        .await
        .map_err(|e| {
            if e.is_unique_violation() {
                ApiError::conflict(format!("a channel named {name:?} exists")).with_field("name")
            } else {
                e.into()
            }
        })?;
    audit_log::success(
        &mut tx,
        &Actor::user(&principal),
        &client.ip,
        "alert_channel.update",
        &format!("alert_channel:{}", row.id),
        json!({"name": name, "enabled": enabled, "settings_changed": req.settings.is_some()}),
    )
    .await?;
    let updated = tx
        .alert_channel(&row.id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "no such channel"))?;
    tx.commit().await?;
    Ok(Json(channel_dto(updated, &state)))
}

#[utoipa::path(delete, path = "/api/v1/alerts/channels/{id}", operation_id = "delete_alert_channel", tag = "alerts",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_channel(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = validate::uuid("id", &id)?;
    let mut tx = state.store().write(&principal.org_id).await?;
    tx.remove_channel_from_rules(&id).await?;
    if !tx.delete_alert_channel(&id).await? {
        return Err(ApiError::not_found("id", "no such channel"));
    }
    audit_log::commit_success(
        tx,
        &Actor::user(&principal),
        &client.ip,
        "alert_channel.delete",
        &format!("alert_channel:{id}"),
        json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/alerts/channels/{id}/test", operation_id = "test_alert_channel", tag = "alerts",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = TestResultDto), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn test_channel(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<Json<TestResultDto>> {
    let row = channel_row(&state, &principal.org_id, &id).await?;
    let TestOutcome { delivered, detail } = state
        .extensions()?
        .alerts
        .send_test(&principal.org_id, &row)
        .await;
    let event = audit_log::event(
        &Actor::user(&principal),
        &client.ip,
        "alert_channel.test",
        &format!("alert_channel:{}", row.id),
        if delivered { "success" } else { "failure" },
        json!({"detail": detail}),
    );
    audit_log::record_standalone(&state, &principal.org_id, event).await;
    Ok(Json(TestResultDto { delivered, detail }))
}

#[utoipa::path(get, path = "/api/v1/alerts/rules", operation_id = "list_alert_rules", tag = "alerts",
    responses((status = 200, body = Vec<RuleDto>)), security(("bearer" = [])))]
pub async fn list_rules(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<Vec<RuleDto>>> {
    let mut tx = state.store().read(&principal.org_id).await?;
    let rows = tx.list_alert_rules().await?;
    tx.commit().await?;
    Ok(Json(rows.into_iter().map(rule_dto).collect()))
}

#[utoipa::path(post, path = "/api/v1/alerts/rules", operation_id = "create_alert_rule", tag = "alerts",
    request_body = CreateRuleRequest,
    responses((status = 201, body = RuleDto), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_rule(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    ApiJson(mut req): ApiJson<CreateRuleRequest>,
) -> ApiResult<(StatusCode, Json<RuleDto>)> {
    // Free-form JSON is not read again by the body extractor: `3.0` is the integer 3 here too.
    integral_floats_to_integers(&mut req.params);
    let name = validate::label("name", &req.name)?;
    let kind = RuleKind::parse(&req.kind).ok_or_else(|| {
        ApiError::invalid(
            "kind",
            "kind must be container_crashed, restart_loop, cpu_high, memory_high, node_offline, certificate_expiring, log_error_spike, proxy_error_rate or policy_engine_failed",
        )
    })?;
    let params = infrapilot_alerts::rules::check_params(kind, &req.params)
        .map_err(|e| ApiError::invalid(&e.field, e.message))?;
    let severity = match &req.severity {
        None => Severity::Warning,
        Some(s) => Severity::parse(s).ok_or_else(|| {
            ApiError::invalid("severity", "severity must be info, warning or critical")
        })?,
    };
    let cooldown = req.cooldown_seconds.unwrap_or(300);
    if cooldown > MAX_COOLDOWN_SECONDS {
        return Err(ApiError::invalid(
            "cooldown_seconds",
            format!("cooldown_seconds must be at most {MAX_COOLDOWN_SECONDS}"),
        ));
    }
    if req.channel_ids.is_empty() || req.channel_ids.len() > MAX_RULE_CHANNELS {
        return Err(ApiError::invalid(
            "channel_ids",
            format!("channel_ids must list 1–{MAX_RULE_CHANNELS} channels"),
        ));
    }
    let mut tx = state.store().write(&principal.org_id).await?;
    let mut channels = Vec::new();
    for (i, raw) in req.channel_ids.iter().enumerate() {
        let field = format!("channel_ids.{i}");
        let id = validate::uuid(&field, raw)?;
        if tx.alert_channel(&id).await?.is_none() {
            return Err(ApiError::not_found(&field, "no such channel"));
        }
        if !channels.contains(&id) {
            channels.push(id);
        }
    }
    let agent_id = match &req.agent_id {
        None => None,
        Some(raw) => {
            let id = validate::uuid("agent_id", raw)?;
            if tx.agent(&id).await?.is_none() {
                return Err(ApiError::not_found("agent_id", "no such node"));
            }
            Some(id)
        }
    };
    let id = uuid::Uuid::new_v4().to_string();
    let params_json = serde_json::to_string(&params).map_err(ApiError::internal)?;
    let channels_json = serde_json::to_string(&channels).map_err(ApiError::internal)?;
    tx.insert_alert_rule(&NewAlertRule {
        id: &id,
        name: &name,
        kind: kind.as_str(),
        params: &params_json,
        agent_id: agent_id.as_deref(),
        severity: severity.as_str(),
        cooldown_seconds: i64::from(cooldown),
        channel_ids: &channels_json,
    })
    .await
    .map_err(|e| {
        if e.is_unique_violation() {
            ApiError::conflict(format!("a rule named {name:?} exists")).with_field("name")
        } else {
            e.into()
        }
    })?;
    audit_log::success(
        &mut tx,
        &Actor::user(&principal),
        &client.ip,
        "alert_rule.create",
        &format!("alert_rule:{id}"),
        json!({"name": name, "kind": kind.as_str(), "params": params, "channels": channels}),
    )
    .await?;
    let row = tx
        .alert_rule(&id)
        .await?
        .ok_or_else(|| ApiError::internal("created rule vanished"))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(rule_dto(row))))
}

#[utoipa::path(patch, path = "/api/v1/alerts/rules/{id}", operation_id = "update_alert_rule", tag = "alerts",
    params(("id" = uuid::Uuid, Path)), request_body = UpdateRuleRequest,
    responses((status = 200, body = RuleDto), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_rule(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateRuleRequest>,
) -> ApiResult<Json<RuleDto>> {
    let id = validate::uuid("id", &id)?;
    let mut tx = state.store().write(&principal.org_id).await?;
    if !tx.set_alert_rule_enabled(&id, req.enabled).await? {
        return Err(ApiError::not_found("id", "no such rule"));
    }
    audit_log::success(
        &mut tx,
        &Actor::user(&principal),
        &client.ip,
        "alert_rule.update",
        &format!("alert_rule:{id}"),
        json!({"enabled": req.enabled}),
    )
    .await?;
    let row = tx
        .alert_rule(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "no such rule"))?;
    tx.commit().await?;
    Ok(Json(rule_dto(row)))
}

#[utoipa::path(delete, path = "/api/v1/alerts/rules/{id}", operation_id = "delete_alert_rule", tag = "alerts",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_rule(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = validate::uuid("id", &id)?;
    let mut tx = state.store().write(&principal.org_id).await?;
    if !tx.delete_alert_rule(&id).await? {
        return Err(ApiError::not_found("id", "no such rule"));
    }
    audit_log::commit_success(
        tx,
        &Actor::user(&principal),
        &client.ip,
        "alert_rule.delete",
        &format!("alert_rule:{id}"),
        json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/alerts/history", operation_id = "alert_history", tag = "alerts",
    params(HistoryQuery),
    responses((status = 200, body = Vec<AlertEventDto>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn history(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<Vec<AlertEventDto>>> {
    let before = q
        .before
        .as_deref()
        .map(|b| validate::timestamp("before", b))
        .transpose()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "limit must be 1–500"));
    }
    let mut tx = state.store().read(&principal.org_id).await?;
    let events = tx.list_alert_events(before, i64::from(limit)).await?;
    let rules = tx.list_alert_rules().await?;
    let channels = tx.list_alert_channels().await?;
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let deliveries = tx.alert_deliveries_of(&ids).await?;
    tx.commit().await?;
    let out = events
        .into_iter()
        .map(|e| {
            let rule = rules.iter().find(|r| r.id == e.rule_id);
            AlertEventDto {
                deliveries: deliveries
                    .iter()
                    .filter(|d| d.event_id == e.id)
                    .map(|d| DeliveryDto {
                        channel_id: d.channel_id.clone(),
                        channel_name: channels
                            .iter()
                            .find(|c| c.id == d.channel_id)
                            .map(|c| c.name.clone()),
                        transition: d.transition.clone(),
                        state: d.state.clone(),
                        attempts: d.attempts,
                        last_error: d.last_error.clone(),
                        detail: d.detail.clone(),
                        updated_at: validate::rfc3339(d.updated_at),
                    })
                    .collect(),
                rule_name: rule.map(|r| r.name.clone()),
                kind: rule.map(|r| r.kind.clone()),
                id: e.id,
                rule_id: e.rule_id,
                target: e.target,
                state: e.state,
                severity: e.severity,
                summary: e.summary,
                occurrences: e.occurrences,
                fired_at: validate::rfc3339(e.fired_at),
                resolved_at: e.resolved_at.map(validate::rfc3339),
            }
        })
        .collect();
    Ok(Json(out))
}
