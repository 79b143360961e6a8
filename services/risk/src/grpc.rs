//! AccessDecision over gRPC, with the standard health service and server reflection, and the
//! signals consumer that shares its signal intake.
//!
//! Authentication: with `risk.token_sha256` set, AccessDecision calls must carry
//! `authorization: Bearer <token>` whose SHA-256 is listed (every digest is compared, in
//! constant time); health and reflection stay open for probes and tools.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use mesh_bus::{BatchHandler, Delivery, HandlerError, Outgoing, Publisher};
use mesh_engine::risk::{AccessRequest, Sensitivity, Verdict};
use mesh_model::RiskSignal;
use mesh_proto::WireEvent;
use mesh_proto::v1;
use mesh_proto::v1::access_decision_server::{AccessDecision, AccessDecisionServer};
use mesh_runtime::config::RiskConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{Decided, Risk, RiskError};

/// The AccessDecision service.
#[derive(Debug, Clone)]
pub struct AccessDecisionService {
    risk: Arc<Risk>,
    publisher: Publisher,
}

impl AccessDecisionService {
    /// Serves decisions from `risk`; signals it cannot apply go to MESH_SIGNALS through
    /// `publisher`.
    pub fn new(risk: Arc<Risk>, publisher: Publisher) -> Self {
        Self { risk, publisher }
    }
}

fn required(value: &str, field: &str) -> Result<String, Status> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    Ok(value.to_owned())
}

/// Reads a DecideRequest into the engine's request and the mesh object, if given.
pub fn access_request(
    request: v1::DecideRequest,
    now: DateTime<Utc>,
) -> Result<(AccessRequest, Option<String>), Status> {
    let subject = required(&request.subject, "subject")?;
    let resource = required(&request.resource, "resource")?;
    let action = required(&request.action, "action")?;
    let mesh_object = match request.mesh_object_id {
        Some(id) => Some(
            uuid::Uuid::parse_str(&id)
                .map_err(|e| {
                    Status::invalid_argument(format!("mesh_object_id {id:?} is not a UUID: {e}"))
                })?
                .hyphenated()
                .to_string(),
        ),
        None => None,
    };
    let sensitivity = match v1::Sensitivity::try_from(request.sensitivity) {
        Ok(v1::Sensitivity::Unspecified | v1::Sensitivity::Low) => Sensitivity::Low,
        Ok(v1::Sensitivity::Medium) => Sensitivity::Medium,
        Ok(v1::Sensitivity::High) => Sensitivity::High,
        Ok(v1::Sensitivity::Critical) => Sensitivity::Critical,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "sensitivity {} is not a known value",
                request.sensitivity
            )));
        }
    };
    let context = request.context.unwrap_or_default();
    let location = match context.location {
        Some(l) if l.latitude.is_finite() && l.longitude.is_finite() => {
            if !(-90.0..=90.0).contains(&l.latitude) || !(-180.0..=180.0).contains(&l.longitude) {
                return Err(Status::invalid_argument(
                    "context.location is outside latitude -90..90 or longitude -180..180",
                ));
            }
            Some((l.latitude, l.longitude, l.country))
        }
        Some(_) => {
            return Err(Status::invalid_argument(
                "context.location has a coordinate that is not a number",
            ));
        }
        None => None,
    };
    let mfa = context.mfa.unwrap_or_default();
    let time = match &context.time {
        Some(t) => mesh_proto::timestamp_to_time(t)
            .ok_or_else(|| Status::invalid_argument("context.time is not a valid timestamp"))?,
        None => now,
    };
    let attributes = mesh_proto::attributes_from_pb(context.attributes)
        .map_err(|e| Status::invalid_argument(format!("context.{e}")))?;
    Ok((
        AccessRequest {
            subject,
            resource,
            action,
            sensitivity,
            ip: context.ip.filter(|s| !s.is_empty()),
            device_id: context.device_id.filter(|s| !s.is_empty()),
            location,
            mfa_completed: mfa.completed,
            mfa_method: mfa.method.filter(|m| !m.is_empty()),
            mfa_at: mfa
                .completed_at
                .as_ref()
                .and_then(mesh_proto::timestamp_to_time),
            interactive: context.interactive,
            time,
            context: attributes,
        },
        mesh_object,
    ))
}

/// Writes a decision as the response.
pub fn decide_response(decided: &Decided, policy_version: u64) -> v1::DecideResponse {
    let outcome = &decided.outcome;
    let decision = match outcome.verdict {
        Verdict::Allow => v1::Decision::Allow,
        Verdict::Deny => v1::Decision::Deny,
        Verdict::RequireMfa => v1::Decision::RequireMfa,
        Verdict::Limit => v1::Decision::Limit,
    };
    v1::DecideResponse {
        decision: decision as i32,
        limit_scope: outcome.scope.clone().unwrap_or_default(),
        score: outcome.assessment.score,
        reasons: outcome
            .reasons
            .iter()
            .map(|r| v1::DecisionReason {
                code: r.code.clone(),
                message: r.message.clone(),
                weight: i32::try_from(r.weight).unwrap_or(i32::MAX),
            })
            .collect(),
        policy: outcome.policy.clone(),
        decision_id: decided.decision_id.hyphenated().to_string(),
        degraded: decided.degraded,
        decided_at: Some(mesh_proto::timestamp_to_pb(Utc::now())),
        policy_version,
    }
}

#[tonic::async_trait]
impl AccessDecision for AccessDecisionService {
    async fn decide(
        &self,
        request: Request<v1::DecideRequest>,
    ) -> Result<Response<v1::DecideResponse>, Status> {
        let (access, mesh_object) = access_request(request.into_inner(), Utc::now())?;
        let decided = self.risk.decide(&access, mesh_object.as_deref()).await;
        Ok(Response::new(decide_response(
            &decided,
            self.risk.policy_version(),
        )))
    }

    async fn report_signal(
        &self,
        request: Request<v1::ReportSignalRequest>,
    ) -> Result<Response<v1::ReportSignalResponse>, Status> {
        let signal = request
            .into_inner()
            .signal
            .ok_or_else(|| Status::invalid_argument("signal is required"))?;
        let signal: RiskSignal = signal
            .try_into()
            .map_err(|e: mesh_proto::ConversionError| Status::invalid_argument(e.to_string()))?;
        match self.risk.apply_signal(&signal).await {
            Ok(duplicate) => Ok(Response::new(v1::ReportSignalResponse {
                accepted: true,
                duplicate,
            })),
            Err(error) => {
                // Kept on MESH_SIGNALS: the consumer applies it once Redis answers.
                tracing::warn!(error = %error, signal = %signal.signal_id, "signal not applied now; queued on MESH_SIGNALS");
                let message = Outgoing::encode_raw(
                    format!("mesh.signal.{}", signal.kind.subject_token()),
                    signal.signal_id.to_string(),
                    RiskSignal::SCHEMA,
                    signal.into_wire(),
                );
                let duplicate = self.publisher.publish(message).await.map_err(|e| {
                    Status::unavailable(format!(
                        "the signal could be neither applied nor queued: {e}"
                    ))
                })?;
                Ok(Response::new(v1::ReportSignalResponse {
                    accepted: true,
                    duplicate,
                }))
            }
        }
    }
}

/// Binds the gRPC listener.
pub async fn bind(config: &RiskConfig) -> Result<TcpListener, RiskError> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|e| RiskError::Config(format!("cannot listen on {}: {e}", config.listen)))
}

/// Serves AccessDecision, health and reflection on `listener` until `shutdown`.
pub async fn serve(
    service: AccessDecisionService,
    listener: TcpListener,
    config: &RiskConfig,
    shutdown: CancellationToken,
) -> Result<(), RiskError> {
    let addr = listener
        .local_addr()
        .map_err(|e| RiskError::Config(format!("listener address: {e}")))?;
    let check = mesh_runtime::auth::GrpcBearer::new(&config.token_sha256, "risk.token_sha256")
        .map_err(RiskError::Config)?;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AccessDecisionServer<AccessDecisionService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mesh_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| RiskError::Config(format!("reflection: {e}")))?;
    let access =
        AccessDecisionServer::with_interceptor(service, move |request| check.check(request));
    tracing::info!(%addr, "AccessDecision listening");
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(access)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await
        .map_err(|source| RiskError::Serve { addr, source })
}

/// The `risk-signals` consumer: applies each signal; Redis down retries the batch.
#[derive(Debug)]
pub struct SignalsHandler {
    risk: Arc<Risk>,
}

impl SignalsHandler {
    /// A handler applying signals through `risk`.
    pub fn new(risk: Arc<Risk>) -> Self {
        Self { risk }
    }
}

impl BatchHandler for SignalsHandler {
    async fn handle(&self, batch: &[Delivery]) -> Result<(), HandlerError> {
        for delivery in batch {
            let signal: RiskSignal = delivery.decode_event()?;
            self.risk
                .apply_signal(&signal)
                .await
                .map_err(HandlerError::transient)?;
        }
        Ok(())
    }
}
