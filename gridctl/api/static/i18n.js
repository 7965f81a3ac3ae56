// The pages' words in French (first) and English, and numbers, dates and units formatted for the language.
"use strict";

const i18n = (() => {
  const KEY = "gridctl.lang";
  const WORDS = {
    fr: {
      "app.name": "gridctl",
      "lang.label": "Langue",
      "nav.signout": "Se déconnecter",
      "nav.skip": "Aller au contenu",
      "common.loading": "Chargement…",
      "common.none": "—",
      "common.error": "Une erreur est survenue : {message}",
      "common.session_ended": "Votre session a pris fin : reconnectez-vous.",
      "common.site": "Site",
      "common.previous": "Précédent",
      "common.next": "Suivant",
      "common.page": "Page {page} sur {pages}",
      "common.download_csv": "Télécharger en CSV",
      "common.cancel": "Annuler",
      "common.confirm": "Confirmer",
      "common.refresh": "Actualiser",
      "common.date": "Date",
      "login.title": "Connexion",
      "login.intro": "Connectez-vous avec le nom d'utilisateur et le mot de passe que vous avez choisis.",
      "login.username": "Nom d'utilisateur",
      "login.password": "Mot de passe",
      "login.submit": "Se connecter",
      "login.wrong": "Nom d'utilisateur ou mot de passe incorrect.",
      "login.locked": "Trop de tentatives. Réessayez dans {seconds} s.",
      "login.forgot": "Mot de passe oublié ? Demandez un nouveau lien d'activation à votre gestionnaire.",
      "login.open_data": "Données ouvertes du quartier (sans compte) :",
      "login.open_sites": "sites",
      "login.api": "schéma de l'API",
      "activate.title": "Choisir votre mot de passe",
      "activate.intro": "Ce lien ne sert qu'une fois. Choisissez un mot de passe d'au moins 12 caractères.",
      "activate.password": "Nouveau mot de passe",
      "activate.confirm": "Confirmez le mot de passe",
      "activate.submit": "Enregistrer et me connecter",
      "activate.mismatch": "Les deux mots de passe ne sont pas identiques.",
      "activate.short": "Au moins 12 caractères.",
      "activate.gone": "Ce lien n'est plus valable (déjà utilisé ou expiré). Demandez-en un nouveau.",
      "activate.no_token": "Ce lien est incomplet : ouvrez le lien reçu en entier.",
      "role.resident": "résident", "role.operator": "exploitant", "role.manager": "gestionnaire d'énergie",
      "role.admin": "administrateur",
      // Resident
      "resident.title": "Ma consommation",
      "resident.dwelling": "Logement",
      "resident.month_title": "Ce mois-ci",
      "resident.compare_less": "{pct} de moins que la médiane des logements de votre immeuble {when}.",
      "resident.compare_more": "{pct} de plus que la médiane des logements de votre immeuble {when}.",
      "resident.compare_same": "Autant que la médiane des logements de votre immeuble {when}.",
      "resident.compare_detail": "Vous : {own} · médiane de {count} logements : {median}",
      "resident.compare_none": "Pas de comparaison possible : {reason}",
      "resident.this_month": "ce mois-ci",
      "resident.in_month": "en {month}",
      "resident.split_title": "Heures pleines et heures creuses",
      "resident.split_peak": "Heures pleines",
      "resident.split_offpeak": "Heures creuses",
      "resident.split_line": "{energy} · {cost}",
      "resident.total_cost": "Coût de l'énergie {when} : {cost}",
      "resident.tariff": "Votre tarif : {name}",
      "tariff.base": "Base (un seul prix, {price} le kWh)",
      "tariff.hp_hc": "Heures pleines / heures creuses ({peak} le kWh en heures pleines, {offpeak} en heures creuses de {windows})",
      "tariff.tempo": "Tempo (prix selon la couleur du jour)",
      "tariff.spot": "Prix du marché heure par heure",
      "resident.advice_title": "Conseils tirés de votre consommation",
      "resident.advice_none": "Rien à signaler : votre consommation est dans la norme de votre immeuble.",
      "advice.night_base_load": "La nuit, votre logement consomme en continu {own} contre {building} pour un logement typique de votre immeuble. Des appareils en veille ou un vieux réfrigérateur ? Ramener ce talon au niveau de l'immeuble économiserait environ {eur} par an.",
      "advice.peak_hours": "{own} de votre consommation a lieu en heures pleines (médiane de l'immeuble : {building}). Programmer lave-linge, lave-vaisselle ou chauffe-eau en heures creuses (un cinquième de votre consommation en heures pleines) économiserait environ {eur} par an.",
      "advice.above_median": "Vous consommez {own} contre {building} pour la médiane de l'immeuble. Revenir à la médiane économiserait environ {eur} par an.",
      "resident.daily_title": "Consommation par jour",
      "resident.from": "Du",
      "resident.to": "au (exclu)",
      "resident.show": "Afficher",
      "resident.daily_total": "{energy} du {start} au {end}",
      "resident.daily_series": "Consommation (kWh/jour)",
      "resident.median_series": "Médiane de l'immeuble (kWh/jour)",
      "resident.no_data": "Aucune donnée sur cette période.",
      "resident.consent_title": "Courbe de charge horaire",
      "resident.consent_text": "Par défaut, seuls vos totaux par jour sont affichés. Si vous le souhaitez, vous pouvez voir votre consommation heure par heure. Vous pouvez retirer ce consentement à tout moment : l'affichage horaire s'arrête aussitôt.",
      "resident.consent_on": "Afficher ma consommation heure par heure",
      "resident.consent_given": "Consentement donné le {date}. Vous pouvez le retirer ici à tout moment.",
      "resident.consent_withdrawn": "Consentement retiré. Seuls les totaux par jour sont affichés.",
      "resident.consent_never": "Aucun consentement donné.",
      "resident.hourly_series": "Consommation (kWh/heure)",
      "resident.rights_title": "Mes données",
      "resident.export": "Télécharger toutes mes données",
      "resident.erase": "Supprimer mon compte…",
      "resident.erase_confirm": "Supprimer votre compte, vos consentements et le lien avec votre logement ? C'est définitif.",
      "resident.erased": "Votre compte est supprimé.",
      "resident.exported": "Vos données ont été téléchargées.",
      // Operator
      "operator.title": "Exploitation",
      "operator.overview": "Vue d'ensemble",
      "operator.flows": "Puissances en ce moment",
      "flow.grid_import": "Réseau (soutirage)", "flow.grid_export": "Réseau (injection)", "flow.grid": "Réseau",
      "flow.pv": "Photovoltaïque", "flow.battery_charge": "Batterie (charge)",
      "flow.battery_discharge": "Batterie (décharge)", "flow.battery": "Batterie", "flow.ev": "Recharge VE",
      "flow.heating_cooling": "Chauffage et climatisation", "flow.lighting": "Éclairage",
      "flow.appliances": "Appareils programmables",
      "flow.no_reading": "pas de mesure récente",
      "flow.missing": "{missing} point(s) sur {points} sans mesure récente",
      "operator.alarms_summary": "{active} alarme(s) active(s), dont {unack} non acquittée(s)",
      "operator.devices_summary": "Équipements par état :",
      "state.ok": "en service", "state.degraded": "dégradé", "state.offline": "hors ligne", "state.unknown": "inconnu",
      "operator.alarms": "Alarmes actives",
      "operator.no_alarm": "Aucune alarme active.",
      "operator.acknowledge": "Acquitter",
      "operator.acknowledged": "acquittée par {who}",
      "severity.critical": "critique", "severity.warning": "avertissement", "severity.info": "information",
      "operator.devices": "Équipements et points",
      "operator.filter": "Filtrer (équipement ou point)",
      "operator.state_filter": "État",
      "operator.all_states": "Tous les états",
      "operator.device_line": "{points} point(s) · {protocol} · {failures} échec(s) de suite",
      "operator.hands_off": "Reprendre la main",
      "operator.hands_on": "Rendre la main à gridctl",
      "operator.not_commanded": "non commandé par gridctl",
      "operator.hands_off_scopes": "gridctl ne commande plus :",
      "operator.hands_off_none": "gridctl commande tous les équipements.",
      "operator.hands_off_confirm": "gridctl cessera de commander {target} : ses consignes seront relâchées et l'équipement reprendra son fonctionnement local. Indiquez la raison :",
      "operator.hands_off_reason": "Raison (consignée au journal)",
      "operator.hands_off_done": "{target} : gridctl ne commande plus. Consignes relâchées : {count}.",
      "operator.hands_on_done": "{target} : gridctl commande de nouveau.",
      "operator.whole_site": "tout le site",
      "operator.schedule": "Plan en vigueur",
      "operator.no_schedule": "Pas de plan en vigueur pour l'instant.",
      "operator.schedule_status": "Plan {id} ({status}), {cost}, politique version {version}, valable jusqu'à {until}",
      "operator.audit": "Journal des écritures",
      "operator.audit_device": "Équipement",
      "operator.audit_actor": "Auteur",
      "operator.audit_outcome": "Résultat",
      "operator.audit_any": "Tous",
      "operator.search": "Rechercher",
      "operator.audit_count": "{count} écriture(s)",
      "col.point": "Point", "col.value": "Valeur", "col.quality": "Qualité", "col.age": "Âge",
      "col.severity": "Gravité", "col.subject": "Objet", "col.message": "Message", "col.raised": "Depuis",
      "col.ack": "Acquittement", "col.time": "Heure", "col.actor": "Auteur", "col.outcome": "Résultat",
      "col.old": "Avant", "col.requested": "Demandé", "col.written": "Écrit", "col.reason": "Raison",
      "col.version": "Version", "col.when": "Quand", "col.who": "Par", "col.changed": "Modifié",
      "col.comment": "Motif", "col.current": "En vigueur", "col.proposed": "Proposée", "col.figure": "Indicateur",
      "col.from": "Début", "col.to": "Fin", "col.building": "Immeuble", "col.energy": "Énergie", "col.max_import": "Soutirage max.", "col.value_eur": "Rémunération",
      "quality.good": "bonne", "quality.stale": "ancienne", "quality.bad": "mauvaise",
      "outcome.written": "écrite", "outcome.renewed": "renouvelée", "outcome.relinquished": "relâchée",
      "outcome.override": "forçage local", "outcome.mismatch": "relecture différente", "outcome.rejected": "refusée",
      "outcome.failed": "échouée", "outcome.interrupted": "interrompue (arrêt brutal)",
      "outcome.reclaimed": "reprise au redémarrage",
      "alarm.device_offline": "équipement hors ligne", "alarm.stale_point": "mesure ancienne",
      "alarm.write_mismatch": "écriture non confirmée", "alarm.override": "forçage local",
      "alarm.comfort_violation": "confort non tenu", "alarm.spool_filling": "tampon d'historique qui se remplit",
      "alarm.optimizer_failed": "échec de l'optimiseur", "alarm.journal_failed": "journal des écritures en panne",
      // Manager
      "manager.title": "Gestion de l'énergie",
      "manager.policy": "Politique du site",
      "manager.policy_version": "Version {version} par {author}, le {date}",
      "manager.policy_defaults": "Valeurs par défaut du site (aucune version enregistrée)",
      "manager.comfort": "Confort par zone",
      "manager.zone": "Zone",
      "manager.occupied_band": "Occupée (°C)",
      "manager.unoccupied_band": "Inoccupée (°C)",
      "manager.min": "min.",
      "manager.max": "max.",
      "manager.occupied_hours": "Heures d'occupation",
      "manager.hours_hint": "ex. 07:00-19:00 ; plusieurs plages séparées par des virgules ; vide = horaires du site",
      "manager.ev": "Recharge des véhicules",
      "manager.comfort_margin": "Marge gardée à l’intérieur des plages de confort (K)",
      "manager.ev_minimum": "Énergie garantie au départ (kWh)",
      "manager.ev_max_power": "Puissance max. par borne (kW)",
      "manager.limits": "Limites du site",
      "manager.subscribed": "Puissance souscrite (kVA ≈ kW)",
      "manager.import_limit": "Soutirage max. (kW)",
      "manager.peak_price": "Prix de la pointe (€ par kW)",
      "manager.carbon": "Poids du carbone (€ par kg CO₂)",
      "manager.dr": "Effacement (demande du réseau)",
      "manager.dr_participate": "Le site participe aux effacements",
      "manager.lighting": "Éclairage public",
      "manager.curfew": "Extinction (heure locale)",
      "manager.curfew_level": "Niveau pendant l'extinction (%)",
      "manager.site_default": "valeur du site",
      "manager.whatif": "Comparer",
      "manager.save": "Mettre en vigueur",
      "manager.reason": "Motif du changement",
      "manager.reason_needed": "Indiquez le motif du changement.",
      "manager.invalid": "Corrigez les champs signalés.",
      "manager.whatif_title": "Simulation : en vigueur et proposée",
      "manager.whatif_running": "L'optimiseur calcule les deux plans…",
      "manager.whatif_done": "Comparaison sur {hours} h à partir du {start}. Rien n'a été écrit.",
      "manager.whatif_none": "Modifiez la politique puis cliquez sur « Comparer ».",
      "fig.cost": "Coût de l'énergie", "fig.co2": "CO₂", "fig.peak": "Pointe de soutirage",
      "fig.discomfort": "Inconfort", "fig.ev_unmet": "Énergie VE non livrée", "fig.violations": "Manquements",
      "manager.no_violation": "aucun manquement",
      "manager.saved": "Version {version} en vigueur. Modifié : {changed}.",
      "manager.versions": "Historique des versions",
      "manager.restore": "Rétablir",
      "manager.restore_confirm": "Remettre en vigueur la version {version} ? Une nouvelle version sera créée.",
      "manager.restored": "Version {version} rétablie (nouvelle version {new}).",
      "manager.restored_defaults": "Valeurs du site rétablies (nouvelle version {new}).",
      "manager.restore_comment": "Retour à la version {version}",
      "manager.restore_defaults_comment": "Retour aux valeurs du site",
      "manager.defaults_row": "valeurs du site",
      "manager.kpis": "Indicateurs",
      "manager.period": "Période",
      "period.day": "Jour", "period.week": "Semaine", "period.month": "Mois",
      "manager.kpi_range": "Du {start} au {end}",
      "manager.kpi_building": "Consommation des logements par immeuble (données ouvertes, 10 logements min.)",
      "kpi.import_energy": "Énergie soutirée", "kpi.export_energy": "Énergie injectée", "kpi.cost": "Coût net",
      "kpi.co2": "CO₂", "kpi.peak_import": "Pointe", "kpi.pv_energy": "Production PV",
      "kpi.self_consumption": "Autoconsommation", "kpi.discomfort": "Inconfort",
      "kpi.plan_adherence": "Écart au plan",
      "kpi.forecast_load_mae_1h": "Prévision de charge à 1 h (EAM)", "kpi.forecast_load_nrmse_1h": "Prévision de charge à 1 h (nRMSE)",
      "kpi.forecast_load_mae_6h": "Prévision de charge à 6 h (EAM)", "kpi.forecast_load_nrmse_6h": "Prévision de charge à 6 h (nRMSE)",
      "kpi.forecast_load_mae_24h": "Prévision de charge à 24 h (EAM)", "kpi.forecast_load_nrmse_24h": "Prévision de charge à 24 h (nRMSE)",
      "kpi.forecast_pv_mae_1h": "Prévision PV à 1 h (EAM)", "kpi.forecast_pv_nrmse_1h": "Prévision PV à 1 h (nRMSE)",
      "kpi.forecast_pv_mae_6h": "Prévision PV à 6 h (EAM)", "kpi.forecast_pv_nrmse_6h": "Prévision PV à 6 h (nRMSE)",
      "kpi.forecast_pv_mae_24h": "Prévision PV à 24 h (EAM)", "kpi.forecast_pv_nrmse_24h": "Prévision PV à 24 h (nRMSE)",
      "kpi.thermal_model_rmse": "Modèle thermique {zone} (erreur à 24 h)",
      "manager.dr_title": "Effacements annoncés",
      "manager.dr_id": "Identifiant", "manager.dr_start": "Début", "manager.dr_end": "Fin",
      "manager.dr_kw": "Soutirage max. (kW)", "manager.dr_value": "Rémunération (€/kWh)",
      "manager.dr_add": "Annoncer",
      "manager.dr_added": "Effacement annoncé : le site replanifie.",
      "manager.dr_state": "État", "manager.dr_cancel": "Annuler",
      "manager.dr_active": "annoncé", "manager.dr_running": "en cours", "manager.dr_over": "terminé",
      "manager.dr_cancelled": "annulé le {when} par {who} : {reason}",
      "manager.dr_rejected": "ignoré, ne respecte plus les règles : {problem}",
      "manager.dr_cancel_reason": "Pourquoi annuler l'effacement {id} ? (conservé avec l'effacement)",
      "manager.dr_cancelled_now": "Effacement {id} annulé : le site replanifie.",
      "manager.version_rejected": "Version refusée, jamais mise en vigueur : {problem}",
      "violation.too_cold": "plus froid que la plage de confort",
      "violation.too_warm": "plus chaud que la plage de confort",
      "violation.ev_energy_unmet": "véhicule pas chargé comme demandé au départ",
      "violation.under_illumination": "moins de lumière que requis",
      "violation.under_lighting": "éclairage public sous le niveau requis",
      "violation.subscribed_power_overshoot": "dépassement de la puissance souscrite",
      "violation.dr_noncompliance": "au-dessus de la limite d'effacement",
      "violation.energy_out_of_band": "batterie hors de sa plage de charge",
      "violation.not_run": "appareil non lancé dans sa plage",
      "violation.import_limit": "soutirage au-delà de la limite du site",
      "violation.export_limit": "injection au-delà de la limite du site",
      "violation.pool_limit": "recharge au-delà de la limite du parc",
      "violation.line": "{asset} : {what}, {amount}, {start} – {end}",
      "policy.field.weights": "pondérations", "policy.field.comfort": "confort",
      "policy.field.import_limit_kw": "soutirage max.", "policy.field.subscribed_power_kw": "puissance souscrite",
      "policy.field.ev_minimum_energy_kwh": "énergie VE garantie", "policy.field.comfort_margin_k": "marge de confort", "policy.field.ev_max_power_kw": "puissance VE max.",
      "policy.field.public_lighting_curfew": "extinction", "policy.field.demand_response_participation": "effacement",
      "policy.field.public_lighting_curfew_level_pct": "niveau d'extinction",
      "validation.number": "Un nombre est attendu.",
      "validation.range": "Entre {min} et {max}.",
      "validation.positive": "Doit être positif.",
      "validation.order": "Le minimum doit être inférieur au maximum.",
      "validation.hours": "Plages attendues au format HH:MM-HH:MM.",
    },
    en: {
      "app.name": "gridctl",
      "lang.label": "Language",
      "nav.signout": "Sign out",
      "nav.skip": "Skip to content",
      "common.loading": "Loading…",
      "common.none": "—",
      "common.error": "Something went wrong: {message}",
      "common.session_ended": "Your session has ended: please sign in again.",
      "common.site": "Site",
      "common.previous": "Previous",
      "common.next": "Next",
      "common.page": "Page {page} of {pages}",
      "common.download_csv": "Download CSV",
      "common.cancel": "Cancel",
      "common.confirm": "Confirm",
      "common.refresh": "Refresh",
      "common.date": "Date",
      "login.title": "Sign in",
      "login.intro": "Sign in with the user name and password you chose.",
      "login.username": "User name",
      "login.password": "Password",
      "login.submit": "Sign in",
      "login.wrong": "Wrong user name or password.",
      "login.locked": "Too many attempts. Try again in {seconds} s.",
      "login.forgot": "Forgot your password? Ask your manager for a new activation link.",
      "login.open_data": "The district's open data (no account needed):",
      "login.open_sites": "sites",
      "login.api": "API schema",
      "activate.title": "Choose your password",
      "activate.intro": "This link works once. Choose a password of at least 12 characters.",
      "activate.password": "New password",
      "activate.confirm": "Confirm the password",
      "activate.submit": "Save and sign in",
      "activate.mismatch": "The two passwords differ.",
      "activate.short": "At least 12 characters.",
      "activate.gone": "This link no longer works (used or expired). Ask for a new one.",
      "activate.no_token": "This link is incomplete: open the whole link you received.",
      "role.resident": "resident", "role.operator": "operator", "role.manager": "energy manager", "role.admin": "administrator",
      "resident.title": "My consumption",
      "resident.dwelling": "Home",
      "resident.month_title": "This month",
      "resident.compare_less": "{pct} less than the median of your building's homes {when}.",
      "resident.compare_more": "{pct} more than the median of your building's homes {when}.",
      "resident.compare_same": "The same as the median of your building's homes {when}.",
      "resident.compare_detail": "You: {own} · median of {count} homes: {median}",
      "resident.compare_none": "No comparison possible: {reason}",
      "resident.this_month": "this month",
      "resident.in_month": "in {month}",
      "resident.split_title": "Peak and off-peak hours",
      "resident.split_peak": "Peak hours",
      "resident.split_offpeak": "Off-peak hours",
      "resident.split_line": "{energy} · {cost}",
      "resident.total_cost": "Energy cost {when}: {cost}",
      "resident.tariff": "Your tariff: {name}",
      "tariff.base": "Base (one price, {price} per kWh)",
      "tariff.hp_hc": "Peak / off-peak ({peak} per kWh in peak hours, {offpeak} off-peak from {windows})",
      "tariff.tempo": "Tempo (prices by the colour of the day)",
      "tariff.spot": "Market price hour by hour",
      "resident.advice_title": "Advice from your consumption",
      "resident.advice_none": "Nothing to report: your consumption is typical of your building.",
      "advice.night_base_load": "At night your home draws {own} continuously, against {building} for a typical home of your building. Appliances on stand-by or an old fridge? Bringing it down to the building's level would save about {eur} a year.",
      "advice.peak_hours": "{own} of your consumption is in peak hours (building median: {building}). Running the washing machine, dishwasher or water heater off-peak (a fifth of your peak-hours use) would save about {eur} a year.",
      "advice.above_median": "You used {own} against {building} for the building's median. Coming back to the median would save about {eur} a year.",
      "resident.daily_title": "Consumption per day",
      "resident.from": "From",
      "resident.to": "to (excluded)",
      "resident.show": "Show",
      "resident.daily_total": "{energy} from {start} to {end}",
      "resident.daily_series": "Consumption (kWh/day)",
      "resident.median_series": "Building median (kWh/day)",
      "resident.no_data": "No data over this period.",
      "resident.consent_title": "Hourly load curve",
      "resident.consent_text": "By default only your daily totals are shown. If you wish, you can see your consumption hour by hour. You can withdraw this consent at any time: the hourly view stops at once.",
      "resident.consent_on": "Show my consumption hour by hour",
      "resident.consent_given": "Consent given on {date}. You can withdraw it here at any time.",
      "resident.consent_withdrawn": "Consent withdrawn. Only daily totals are shown.",
      "resident.consent_never": "No consent given.",
      "resident.hourly_series": "Consumption (kWh/hour)",
      "resident.rights_title": "My data",
      "resident.export": "Download all my data",
      "resident.erase": "Delete my account…",
      "resident.erase_confirm": "Delete your account, your consents and the link to your home? This cannot be undone.",
      "resident.erased": "Your account is deleted.",
      "resident.exported": "Your data was downloaded.",
      "operator.title": "Operations",
      "operator.overview": "Overview",
      "operator.flows": "Power now",
      "flow.grid_import": "Grid (importing)", "flow.grid_export": "Grid (exporting)", "flow.grid": "Grid",
      "flow.pv": "Solar PV", "flow.battery_charge": "Battery (charging)", "flow.battery_discharge": "Battery (discharging)",
      "flow.battery": "Battery", "flow.ev": "EV charging", "flow.heating_cooling": "Heating and cooling",
      "flow.lighting": "Lighting", "flow.appliances": "Scheduled appliances",
      "flow.no_reading": "no recent reading",
      "flow.missing": "{missing} of {points} point(s) without a recent reading",
      "operator.alarms_summary": "{active} active alarm(s), {unack} not acknowledged",
      "operator.devices_summary": "Devices by health:",
      "state.ok": "ok", "state.degraded": "degraded", "state.offline": "offline", "state.unknown": "unknown",
      "operator.alarms": "Active alarms",
      "operator.no_alarm": "No active alarm.",
      "operator.acknowledge": "Acknowledge",
      "operator.acknowledged": "acknowledged by {who}",
      "severity.critical": "critical", "severity.warning": "warning", "severity.info": "info",
      "operator.devices": "Devices and points",
      "operator.filter": "Filter (device or point)",
      "operator.state_filter": "Health",
      "operator.all_states": "Any health",
      "operator.device_line": "{points} point(s) · {protocol} · {failures} failure(s) in a row",
      "operator.hands_off": "Hands off",
      "operator.hands_on": "Give back to gridctl",
      "operator.not_commanded": "not commanded by gridctl",
      "operator.hands_off_scopes": "gridctl no longer commands:",
      "operator.hands_off_none": "gridctl commands every device.",
      "operator.hands_off_confirm": "gridctl will stop commanding {target}: its setpoints are relinquished and the equipment falls back on its local control. Give the reason:",
      "operator.hands_off_reason": "Reason (written to the audit)",
      "operator.hands_off_done": "{target}: gridctl no longer commands it. Setpoints relinquished: {count}.",
      "operator.hands_on_done": "{target}: gridctl commands it again.",
      "operator.whole_site": "the whole site",
      "operator.schedule": "Schedule in force",
      "operator.no_schedule": "No schedule in force yet.",
      "operator.schedule_status": "Plan {id} ({status}), {cost}, policy version {version}, valid until {until}",
      "operator.audit": "Write audit",
      "operator.audit_device": "Device",
      "operator.audit_actor": "Actor",
      "operator.audit_outcome": "Outcome",
      "operator.audit_any": "Any",
      "operator.search": "Search",
      "operator.audit_count": "{count} write(s)",
      "col.point": "Point", "col.value": "Value", "col.quality": "Quality", "col.age": "Age",
      "col.severity": "Severity", "col.subject": "Subject", "col.message": "Message", "col.raised": "Since",
      "col.ack": "Acknowledged", "col.time": "Time", "col.actor": "Actor", "col.outcome": "Outcome",
      "col.old": "Before", "col.requested": "Requested", "col.written": "Written", "col.reason": "Reason",
      "col.version": "Version", "col.when": "When", "col.who": "By", "col.changed": "Changed",
      "col.comment": "Reason", "col.current": "In force", "col.proposed": "Proposed", "col.figure": "Figure",
      "col.from": "Start", "col.to": "End", "col.building": "Building", "col.energy": "Energy", "col.max_import": "Max import", "col.value_eur": "Value",
      "quality.good": "good", "quality.stale": "stale", "quality.bad": "bad",
      "outcome.written": "written", "outcome.renewed": "renewed", "outcome.relinquished": "relinquished",
      "outcome.override": "local override", "outcome.mismatch": "read-back differs", "outcome.rejected": "rejected",
      "outcome.failed": "failed", "outcome.interrupted": "interrupted (abrupt stop)",
      "outcome.reclaimed": "taken back at restart",
      "alarm.device_offline": "device offline", "alarm.stale_point": "stale reading",
      "alarm.write_mismatch": "write not confirmed", "alarm.override": "local override",
      "alarm.comfort_violation": "comfort not kept", "alarm.spool_filling": "history spool filling",
      "alarm.optimizer_failed": "optimiser failed", "alarm.journal_failed": "write journal failing",
      "manager.title": "Energy management",
      "manager.policy": "Site policy",
      "manager.policy_version": "Version {version} by {author}, {date}",
      "manager.policy_defaults": "The site's defaults (no version saved yet)",
      "manager.comfort": "Comfort per zone",
      "manager.zone": "Zone",
      "manager.occupied_band": "Occupied (°C)",
      "manager.unoccupied_band": "Unoccupied (°C)",
      "manager.min": "min",
      "manager.max": "max",
      "manager.occupied_hours": "Occupied hours",
      "manager.hours_hint": "e.g. 07:00-19:00; several ranges separated by commas; empty = the site's hours",
      "manager.ev": "EV charging",
      "manager.comfort_margin": "Margin kept inside the comfort bands (K)",
      "manager.ev_minimum": "Energy guaranteed by departure (kWh)",
      "manager.ev_max_power": "Maximum power per charger (kW)",
      "manager.limits": "Site limits",
      "manager.subscribed": "Subscribed power (kVA ≈ kW)",
      "manager.import_limit": "Maximum import (kW)",
      "manager.peak_price": "Peak price (€ per kW)",
      "manager.carbon": "Carbon weight (€ per kg CO₂)",
      "manager.dr": "Demand response",
      "manager.dr_participate": "The site takes part in demand response",
      "manager.lighting": "Street lighting",
      "manager.curfew": "Curfew (local time)",
      "manager.curfew_level": "Level during the curfew (%)",
      "manager.site_default": "site's value",
      "manager.whatif": "Compare",
      "manager.save": "Put in force",
      "manager.reason": "Reason for the change",
      "manager.reason_needed": "Give the reason for the change.",
      "manager.invalid": "Correct the fields marked.",
      "manager.whatif_title": "What-if: in force and proposed",
      "manager.whatif_running": "The optimiser is computing both plans…",
      "manager.whatif_done": "Compared over {hours} h from {start}. Nothing was written.",
      "manager.whatif_none": "Change the policy, then click “Compare”.",
      "fig.cost": "Energy cost", "fig.co2": "CO₂", "fig.peak": "Peak import", "fig.discomfort": "Discomfort",
      "fig.ev_unmet": "EV energy not delivered", "fig.violations": "Violations",
      "manager.no_violation": "no violation",
      "manager.saved": "Version {version} is in force. Changed: {changed}.",
      "manager.versions": "Version history",
      "manager.restore": "Restore",
      "manager.restore_confirm": "Put version {version} back in force? A new version is created.",
      "manager.restored": "Version {version} restored (new version {new}).",
      "manager.restored_defaults": "The site's defaults restored (new version {new}).",
      "manager.restore_comment": "Back to version {version}",
      "manager.restore_defaults_comment": "Back to the site's defaults",
      "manager.defaults_row": "site defaults",
      "manager.kpis": "KPIs",
      "manager.period": "Period",
      "period.day": "Day", "period.week": "Week", "period.month": "Month",
      "manager.kpi_range": "From {start} to {end}",
      "manager.kpi_building": "Homes' consumption per building (open data, at least 10 homes)",
      "kpi.import_energy": "Imported", "kpi.export_energy": "Exported", "kpi.cost": "Net cost", "kpi.co2": "CO₂",
      "kpi.peak_import": "Peak", "kpi.pv_energy": "PV produced", "kpi.self_consumption": "Self-consumption",
      "kpi.discomfort": "Discomfort", "kpi.plan_adherence": "Gap to plan",
      "kpi.forecast_load_mae_1h": "Load forecast 1 h ahead (MAE)", "kpi.forecast_load_nrmse_1h": "Load forecast 1 h ahead (nRMSE)",
      "kpi.forecast_load_mae_6h": "Load forecast 6 h ahead (MAE)", "kpi.forecast_load_nrmse_6h": "Load forecast 6 h ahead (nRMSE)",
      "kpi.forecast_load_mae_24h": "Load forecast 24 h ahead (MAE)", "kpi.forecast_load_nrmse_24h": "Load forecast 24 h ahead (nRMSE)",
      "kpi.forecast_pv_mae_1h": "PV forecast 1 h ahead (MAE)", "kpi.forecast_pv_nrmse_1h": "PV forecast 1 h ahead (nRMSE)",
      "kpi.forecast_pv_mae_6h": "PV forecast 6 h ahead (MAE)", "kpi.forecast_pv_nrmse_6h": "PV forecast 6 h ahead (nRMSE)",
      "kpi.forecast_pv_mae_24h": "PV forecast 24 h ahead (MAE)", "kpi.forecast_pv_nrmse_24h": "PV forecast 24 h ahead (nRMSE)",
      "kpi.thermal_model_rmse": "Thermal model of {zone} (day-ahead error)",
      "manager.dr_title": "Announced demand-response events",
      "manager.dr_id": "Id", "manager.dr_start": "Start", "manager.dr_end": "End",
      "manager.dr_kw": "Max import (kW)", "manager.dr_value": "Value (€/kWh)",
      "manager.dr_add": "Announce",
      "manager.dr_added": "Announced: the site re-plans now.",
      "manager.dr_state": "State", "manager.dr_cancel": "Cancel",
      "manager.dr_active": "announced", "manager.dr_running": "in progress", "manager.dr_over": "over",
      "manager.dr_cancelled": "cancelled on {when} by {who}: {reason}",
      "manager.dr_rejected": "ignored, no longer meets the rules: {problem}",
      "manager.dr_cancel_reason": "Why cancel event {id}? (kept with the event)",
      "manager.dr_cancelled_now": "Event {id} cancelled: the site re-plans now.",
      "manager.version_rejected": "Rejected version, never put in force: {problem}",
      "violation.too_cold": "colder than the comfort band",
      "violation.too_warm": "warmer than the comfort band",
      "violation.ev_energy_unmet": "car not charged as asked by its departure",
      "violation.under_illumination": "less light than required",
      "violation.under_lighting": "street lighting below its required level",
      "violation.subscribed_power_overshoot": "above the subscribed power",
      "violation.dr_noncompliance": "above the demand-response limit",
      "violation.energy_out_of_band": "battery outside its charge band",
      "violation.not_run": "appliance not run in its window",
      "violation.import_limit": "import above the site's limit",
      "violation.export_limit": "export above the site's limit",
      "violation.pool_limit": "charging above the pool's limit",
      "violation.line": "{asset}: {what}, {amount}, {start} – {end}",
      "policy.field.weights": "weights", "policy.field.comfort": "comfort",
      "policy.field.import_limit_kw": "maximum import", "policy.field.subscribed_power_kw": "subscribed power",
      "policy.field.ev_minimum_energy_kwh": "guaranteed EV energy", "policy.field.comfort_margin_k": "comfort margin", "policy.field.ev_max_power_kw": "EV maximum power",
      "policy.field.public_lighting_curfew": "curfew", "policy.field.demand_response_participation": "demand response",
      "policy.field.public_lighting_curfew_level_pct": "curfew level",
      "validation.number": "A number is expected.",
      "validation.range": "Between {min} and {max}.",
      "validation.positive": "Must be positive.",
      "validation.order": "The minimum must be below the maximum.",
      "validation.hours": "Ranges as HH:MM-HH:MM expected.",
    },
  };

  function pick() {
    const saved = localStorage.getItem(KEY);
    if (saved && WORDS[saved]) return saved;
    for (const tag of navigator.languages || [navigator.language || "fr"]) {
      const base = String(tag).slice(0, 2).toLowerCase();
      if (WORDS[base]) return base;
    }
    return "fr";
  }

  let lang = pick();
  const locale = () => (lang === "fr" ? "fr-FR" : "en-GB");

  function t(key, vars = {}) {
    const text = WORDS[lang][key] ?? WORDS.fr[key] ?? key;
    return text.replace(/\{(\w+)\}/g, (_m, name) => (vars[name] === undefined ? "" : String(vars[name])));
  }
  function has(key) { return key in WORDS[lang]; }

  const formats = new Map();
  function numberFormat(digits) {
    const key = lang + digits;
    if (!formats.has(key)) {
      formats.set(key, new Intl.NumberFormat(locale(), { minimumFractionDigits: digits, maximumFractionDigits: digits }));
    }
    return formats.get(key);
  }
  // A unit after its number with a non-breaking space (French typography, harmless in English).
  function num(value, digits = 1, unit = "") {
    if (value === null || value === undefined || Number.isNaN(Number(value))) return "—";
    const text = numberFormat(digits).format(Number(value));
    return unit ? `${text}\u00a0${unit}` : text;
  }
  const kwh = (v, digits = 1) => num(v, digits, "kWh");
  const kw = (v, digits = 1) => num(v, digits, "kW");
  const eur = (v, digits = 2) => (v === null || v === undefined ? "—"
    : new Intl.NumberFormat(locale(), { style: "currency", currency: "EUR", minimumFractionDigits: digits, maximumFractionDigits: digits }).format(v));
  const pct = (ratio, digits = 0) => (ratio === null || ratio === undefined ? "—"
    : new Intl.NumberFormat(locale(), { style: "percent", minimumFractionDigits: digits, maximumFractionDigits: digits }).format(ratio));

  function toDate(value) { return value instanceof Date ? value : new Date(value); }
  function day(value) {  // a calendar day "YYYY-MM-DD" stays that day whatever the time zone
    const d = typeof value === "string" && value.length === 10 ? new Date(value + "T12:00:00") : toDate(value);
    return new Intl.DateTimeFormat(locale(), { day: "numeric", month: "long", year: "numeric" }).format(d);
  }
  function shortDay(value) {
    const d = typeof value === "string" && value.length === 10 ? new Date(value + "T12:00:00") : toDate(value);
    return new Intl.DateTimeFormat(locale(), { day: "numeric", month: "short" }).format(d);
  }
  function dateTime(value) {
    if (!value) return "—";
    return new Intl.DateTimeFormat(locale(), { dateStyle: "medium", timeStyle: "short" }).format(toDate(value));
  }
  function time(value) {
    return new Intl.DateTimeFormat(locale(), { hour: "2-digit", minute: "2-digit" }).format(toDate(value));
  }
  function monthName(yyyymm) {
    const [y, m] = yyyymm.split("-").map(Number);
    return new Intl.DateTimeFormat(locale(), { month: "long", year: "numeric" }).format(new Date(y, m - 1, 15));
  }
  // "3 minutes ago" from an age in seconds.
  function ago(seconds) {
    const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: "auto", style: "short" });
    const s = Math.max(0, Number(seconds));
    if (s < 60) return rtf.format(-Math.round(s), "second");
    if (s < 3600) return rtf.format(-Math.round(s / 60), "minute");
    if (s < 86400) return rtf.format(-Math.round(s / 3600), "hour");
    return rtf.format(-Math.round(s / 86400), "day");
  }

  // Month and day names for uPlot's axes.
  function dateNames() {
    const months = (style) => [...Array(12).keys()].map((m) => new Intl.DateTimeFormat(locale(), { month: style }).format(new Date(2024, m, 15)));
    const days = (style) => [...Array(7).keys()].map((d) => new Intl.DateTimeFormat(locale(), { weekday: style }).format(new Date(2024, 0, 7 + d)));
    return { MMMM: months("long"), MMM: months("short"), WWWW: days("long"), WWW: days("short") };
  }

  function apply(root = document) {
    document.documentElement.lang = lang;
    root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    root.querySelectorAll("[data-i18n-placeholder]").forEach((el) => { el.placeholder = t(el.dataset.i18nPlaceholder); });
    root.querySelectorAll("[data-i18n-label]").forEach((el) => { el.setAttribute("aria-label", t(el.dataset.i18nLabel)); });
  }

  // A language switch: a select with each language named in itself.
  function switcher(onChange) {
    const label = document.createElement("label");
    label.className = "lang";
    const span = document.createElement("span");
    span.className = "visually-hidden";
    span.dataset.i18n = "lang.label";
    span.textContent = t("lang.label");
    const select = document.createElement("select");
    select.id = "lang";
    for (const [code, name] of [["fr", "Français"], ["en", "English"]]) {
      const option = document.createElement("option");
      option.value = code;
      option.lang = code;
      option.textContent = name;
      select.appendChild(option);
    }
    select.value = lang;
    select.addEventListener("change", () => {
      lang = select.value;
      localStorage.setItem(KEY, lang);
      apply();
      if (onChange) onChange(lang);
    });
    label.append(span, select);
    return label;
  }

  return { t, has, num, kwh, kw, eur, pct, day, shortDay, dateTime, time, monthName, ago, dateNames, apply, switcher,
           get lang() { return lang; }, locale };
})();
