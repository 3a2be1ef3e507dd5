"""A generated, realistic catalog of 500 tools across 25 upstreams, for search tests and benchmarks.

Deterministic and offline. Each upstream models a familiar kind of server (bug tracker, chat,
mail, Kubernetes, payments, …) with its own naming style (snake_case, camelCase, kebab-case);
each tool has a multi-sentence description and 2 to 7 documented parameters, some with enums and
nested objects. `QUERIES` pairs natural-language requests with the tool a person would pick.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types

SEPARATOR = "-"


@dataclass(frozen=True)
class Entity:
    name: str  # snake_case singular
    fields: tuple[str, ...]  # "name:type:description" or "name:enum:description:a|b|c"; first two are required
    extras: tuple[tuple[str, str], ...] = ()  # (verb, first sentence of its description)
    plural: str = ""

    @property
    def many(self) -> str:
        return self.plural or self.name + "s"


@dataclass(frozen=True)
class Server:
    name: str
    system: str  # how descriptions refer to the system
    style: str  # snake | camel | kebab
    entities: tuple[Entity, ...] = field(default_factory=tuple)


E = Entity
SERVERS: tuple[Server, ...] = (
    Server(
        "tracker",
        "the Tracker bug tracker",
        "snake",
        (
            E(
                "issue",
                (
                    "project_key:string:Key of the project, such as WEB",
                    "title:string:One-line summary",
                    "body:string:Markdown description of the problem",
                    "priority:enum:How urgent it is:low|medium|high|urgent",
                ),
                (
                    ("assign", "Assign an issue to a person, replacing the current assignee"),
                    ("close", "Close an issue as fixed, duplicate or won't fix"),
                ),
            ),
            E(
                "comment",
                ("issue_key:string:Issue to comment on, e.g. WEB-42", "body:string:Markdown text of the comment"),
            ),
            E(
                "label",
                (
                    "project_key:string:Project the label belongs to",
                    "name:string:Label text",
                    "color:string:Hex colour such as #ff0000",
                ),
            ),
            E(
                "milestone",
                ("project_key:string:Project key", "title:string:Milestone name", "due_on:string:Due date, YYYY-MM-DD"),
            ),
            E(
                "sprint",
                (
                    "board_id:string:Scrum board",
                    "name:string:Sprint name",
                    "goal:string:What the sprint should achieve",
                ),
                (("start", "Start a planned sprint on a scrum board"),),
            ),
        ),
    ),
    Server(
        "github",
        "GitHub",
        "snake",
        (
            E(
                "repository",
                (
                    "owner:string:User or organisation that owns it",
                    "name:string:Repository name",
                    "visibility:enum:Who can see it:public|private|internal",
                ),
                (("fork", "Fork a repository into your account"),),
                plural="repositories",
            ),
            E(
                "pull_request",
                (
                    "repo:string:owner/name of the repository",
                    "head:string:Branch with the changes",
                    "base:string:Branch to merge into",
                    "draft:boolean:Open as a draft",
                ),
                (
                    ("merge", "Merge a pull request into its base branch"),
                    ("review", "Submit a review on a pull request: approve, comment or request changes"),
                ),
            ),
            E(
                "branch",
                (
                    "repo:string:owner/name of the repository",
                    "name:string:New branch name",
                    "from_ref:string:Commit SHA or branch to start from",
                ),
            ),
            E(
                "release",
                (
                    "repo:string:owner/name of the repository",
                    "tag:string:Git tag such as v1.2.0",
                    "notes:string:Release notes in Markdown",
                ),
            ),
            E(
                "workflow_run",
                (
                    "repo:string:owner/name of the repository",
                    "workflow:string:Workflow file name",
                    "ref:string:Branch or tag to run on",
                ),
                (("rerun", "Re-run a failed GitHub Actions workflow run"),),
            ),
        ),
    ),
    Server(
        "chat",
        "the team chat workspace (Slack)",
        "camel",
        (
            E(
                "message",
                (
                    "channel:string:Channel ID or #name",
                    "text:string:Message text, Slack mrkdwn",
                    "thread_ts:string:Reply in this thread",
                ),
                (
                    ("send", "Send (post) a message to a chat channel or a direct conversation"),
                    ("pin", "Pin a message to the top of its channel"),
                ),
            ),
            E(
                "channel",
                (
                    "name:string:Channel name without #",
                    "is_private:boolean:Create a private channel",
                    "topic:string:Channel topic",
                ),
                (
                    ("archive", "Archive a channel so nobody can post in it"),
                    ("join", "Join a public channel as the bot user"),
                ),
            ),
            E(
                "reaction",
                (
                    "channel:string:Channel of the message",
                    "timestamp:string:Message timestamp",
                    "emoji:string:Emoji name without colons",
                ),
            ),
            E(
                "user",
                ("email:string:Work e-mail address", "display_name:string:Name shown in the workspace"),
                (("lookup", "Look up a workspace member by e-mail address"),),
            ),
            E(
                "reminder",
                ("text:string:What to remind about", "time:string:When, e.g. 'in 20 minutes' or a timestamp"),
            ),
        ),
    ),
    Server(
        "mail",
        "the mailbox (Gmail)",
        "snake",
        (
            E(
                "email",
                (
                    "to:string:Recipient addresses, comma-separated",
                    "subject:string:Subject line",
                    "body:string:Plain-text body",
                    "cc:string:Copy recipients",
                ),
                (
                    ("send", "Send an email message from the authenticated mailbox"),
                    ("reply", "Reply to an email, keeping it in the same thread"),
                ),
                plural="emails",
            ),
            E("draft", ("to:string:Recipient addresses", "subject:string:Subject line", "body:string:Body text")),
            E("mail_label", ("name:string:Label name", "color:enum:Label colour:red|green|blue|grey")),
            E(
                "thread",
                ("thread_id:string:Conversation thread id", "format:enum:How much to return:full|metadata|minimal"),
            ),
            E(
                "attachment",
                ("message_id:string:Email containing it", "attachment_id:string:Attachment id"),
                (("download", "Download an attachment of an email"),),
            ),
        ),
    ),
    Server(
        "calendar",
        "Google Calendar",
        "snake",
        (
            E(
                "event",
                (
                    "calendar_id:string:Calendar, 'primary' for your own",
                    "summary:string:Title of the event",
                    "start:string:Start time, RFC 3339",
                    "end:string:End time, RFC 3339",
                    "attendees:array:E-mail addresses of people to invite",
                ),
                (("reschedule", "Move an event (meeting) to another time and notify attendees"),),
            ),
            E("calendar", ("summary:string:Calendar name", "time_zone:string:IANA time zone")),
            E(
                "free_busy",
                (
                    "time_min:string:Start of the window",
                    "time_max:string:End of the window",
                    "emails:array:People whose availability to check",
                ),
                (("query", "Check when people are free or busy, to find a time for a meeting"),),
                plural="free_busy",
            ),
            E(
                "attendee",
                ("event_id:string:Event", "email:string:Person to invite", "optional:boolean:Mark as optional"),
            ),
            E(
                "reminder",
                (
                    "event_id:string:Event",
                    "minutes:integer:Minutes before the start",
                    "method:enum:How to remind:email|popup",
                ),
            ),
        ),
    ),
    Server(
        "drive",
        "the cloud drive (Google Drive)",
        "snake",
        (
            E(
                "file",
                (
                    "name:string:File name",
                    "parent_id:string:Folder to put it in",
                    "mime_type:string:Content type",
                    "content:string:Text content",
                ),
                (
                    ("share", "Share a file or document with other people by e-mail"),
                    ("copy", "Copy a file into another folder"),
                ),
            ),
            E("folder", ("name:string:Folder name", "parent_id:string:Parent folder")),
            E(
                "permission",
                (
                    "file_id:string:File",
                    "role:enum:Access level:reader|commenter|writer|owner",
                    "email:string:Who gets access",
                ),
            ),
            E(
                "revision",
                ("file_id:string:File", "revision_id:string:Revision"),
                (("restore", "Restore a file to an earlier revision"),),
            ),
            E("shared_drive", ("name:string:Shared drive name", "theme_id:string:Theme")),
        ),
    ),
    Server(
        "fs",
        "the local filesystem",
        "snake",
        (
            E(
                "file",
                (
                    "path:string:Absolute path",
                    "content:string:Text to write",
                    "encoding:enum:Text encoding:utf-8|latin-1",
                ),
                (
                    ("read", "Read the complete contents of a file from disk"),
                    ("move", "Move or rename a file"),
                    ("edit", "Make line-based edits to a text file"),
                ),
            ),
            E(
                "directory",
                ("path:string:Absolute path", "recursive:boolean:Include subdirectories"),
                (("tree", "Show a recursive tree view of a directory"),),
                plural="directories",
            ),
            E("file_info", ("path:string:Absolute path", "follow_symlinks:boolean:Resolve links"), plural="file_info"),
            E("symlink", ("path:string:Where the link goes", "target:string:What it points to")),
            E(
                "allowed_directory",
                ("path:string:Directory", "read_only:boolean:Only allow reading"),
                plural="allowed_directories",
            ),
        ),
    ),
    Server(
        "postgres",
        "the PostgreSQL database",
        "snake",
        (
            E(
                "query",
                (
                    "sql:string:SQL statement",
                    "params:array:Positional parameters",
                    "timeout_ms:integer:Statement timeout",
                ),
                (
                    ("execute", "Run (execute) a SQL query against the database and return the rows"),
                    ("explain", "Explain the query plan of a SQL statement"),
                ),
                plural="queries",
            ),
            E(
                "table",
                ("schema:string:Schema name", "name:string:Table name", "columns:array:Column definitions"),
                (("describe", "Describe a table: its columns, types, indexes and constraints"),),
            ),
            E("schema", ("name:string:Schema name", "owner:string:Owning role")),
            E(
                "index",
                ("table:string:Table name", "columns:array:Indexed columns", "unique:boolean:Unique index"),
                plural="indexes",
            ),
            E(
                "connection",
                ("pid:integer:Backend process id", "database:string:Database name"),
                (("terminate", "Terminate a database connection (backend) by its pid"),),
            ),
        ),
    ),
    Server(
        "k8s",
        "the Kubernetes cluster",
        "kebab",
        (
            E(
                "pod",
                ("namespace:string:Namespace", "name:string:Pod name", "container:string:Container in the pod"),
                (
                    ("restart", "Restart a pod by deleting it so its controller recreates it"),
                    ("logs", "Fetch the logs of a container in a pod"),
                    ("exec", "Run a command inside a container of a pod"),
                ),
            ),
            E(
                "deployment",
                ("namespace:string:Namespace", "name:string:Deployment name", "image:string:Container image"),
                (
                    ("scale", "Scale a deployment to a number of replicas"),
                    ("rollback", "Roll back a deployment to its previous revision"),
                ),
            ),
            E(
                "service",
                (
                    "namespace:string:Namespace",
                    "name:string:Service name",
                    "type:enum:Service type:ClusterIP|NodePort|LoadBalancer",
                ),
            ),
            E("namespace", ("name:string:Namespace name", "labels:object:Labels to set")),
            E(
                "config_map",
                ("namespace:string:Namespace", "name:string:ConfigMap name", "data:object:Key/value pairs"),
            ),
        ),
    ),
    Server(
        "payments",
        "Stripe",
        "camel",
        (
            E(
                "customer",
                ("email:string:Customer e-mail", "name:string:Full name", "metadata:object:Your own key/value data"),
            ),
            E(
                "invoice",
                (
                    "customer:string:Customer id",
                    "collection_method:enum:How to collect:charge_automatically|send_invoice",
                    "days_until_due:integer:For send_invoice",
                ),
                (("finalize", "Finalize a draft invoice so it can be paid"), ("void", "Void an open invoice")),
            ),
            E(
                "payment_intent",
                (
                    "amount:integer:Amount in the smallest currency unit",
                    "currency:string:Three-letter ISO code",
                    "customer:string:Customer id",
                ),
                (("capture", "Capture the funds of an authorized payment"),),
            ),
            E(
                "refund",
                (
                    "payment_intent:string:Payment to refund",
                    "amount:integer:Amount to refund; default all",
                    "reason:enum:Why:duplicate|fraudulent|requested_by_customer",
                ),
            ),
            E(
                "subscription",
                ("customer:string:Customer id", "price:string:Price id", "trial_days:integer:Free trial length"),
                (("cancel", "Cancel a customer's subscription at period end or immediately"),),
            ),
        ),
    ),
    Server(
        "crm",
        "the Salesforce CRM",
        "snake",
        (
            E(
                "contact",
                (
                    "first_name:string:Given name",
                    "last_name:string:Family name",
                    "email:string:E-mail",
                    "account_id:string:Company",
                ),
            ),
            E(
                "lead",
                (
                    "company:string:Company name",
                    "last_name:string:Family name",
                    "status:enum:Lead status:new|working|qualified|unqualified",
                ),
                (("convert", "Convert a qualified lead into an account, contact and opportunity"),),
            ),
            E(
                "opportunity",
                (
                    "account_id:string:Account",
                    "name:string:Deal name",
                    "stage:enum:Sales stage:prospecting|proposal|negotiation|closed_won|closed_lost",
                    "amount:number:Expected revenue",
                ),
                plural="opportunities",
            ),
            E("account", ("name:string:Company name", "industry:string:Industry", "website:string:Company website")),
            E(
                "task",
                ("subject:string:What to do", "due_date:string:YYYY-MM-DD", "who_id:string:Related contact or lead"),
            ),
        ),
    ),
    Server(
        "errors",
        "Sentry error monitoring",
        "snake",
        (
            E(
                "error_issue",
                (
                    "project:string:Project slug",
                    "status:enum:Status:unresolved|resolved|ignored",
                    "query:string:Sentry search query",
                ),
                (("resolve", "Mark an error issue (crash group) as resolved"),),
            ),
            E(
                "error_event",
                ("project:string:Project slug", "event_id:string:Event id"),
                (("symbolicate", "Symbolicate the stack trace of a crash event"),),
            ),
            E(
                "alert_rule",
                (
                    "project:string:Project slug",
                    "name:string:Rule name",
                    "threshold:integer:Events per minute that trigger it",
                ),
            ),
            E("sentry_release", ("version:string:Release version", "projects:array:Project slugs")),
            E("sentry_project", ("team:string:Owning team", "name:string:Project name", "platform:string:e.g. python")),
        ),
    ),
    Server(
        "metrics",
        "Datadog",
        "snake",
        (
            E(
                "metric",
                (
                    "query:string:Metric query, e.g. avg:system.cpu.user{*}",
                    "from_ts:integer:Start, epoch seconds",
                    "to_ts:integer:End, epoch seconds",
                ),
                (("query", "Query time series of a metric over a time window"),),
            ),
            E(
                "monitor",
                (
                    "name:string:Monitor name",
                    "query:string:Alert condition",
                    "message:string:Notification text",
                    "type:enum:Monitor type:metric alert|log alert|service check",
                ),
                (("mute", "Mute (silence) a monitor so it stops alerting for a while"),),
            ),
            E(
                "dashboard",
                (
                    "title:string:Dashboard title",
                    "widgets:array:Widget definitions",
                    "layout_type:enum:Layout:ordered|free",
                ),
            ),
            E(
                "log",
                ("query:string:Log search query", "from_ts:integer:Start", "to_ts:integer:End"),
                (("search", "Search logs collected from your services"),),
            ),
            E(
                "incident",
                (
                    "title:string:Incident title",
                    "severity:enum:Severity:SEV-1|SEV-2|SEV-3|SEV-4",
                    "commander:string:Incident commander",
                ),
            ),
        ),
    ),
    Server(
        "wiki",
        "Confluence",
        "camel",
        (
            E(
                "page",
                (
                    "space_key:string:Space",
                    "title:string:Page title",
                    "body:string:Storage-format body",
                    "parent_id:string:Parent page",
                ),
                (("move", "Move a page under another parent page"),),
            ),
            E("space", ("key:string:Space key", "name:string:Space name", "type:enum:Space type:global|personal")),
            E("page_comment", ("page_id:string:Page", "body:string:Comment text")),
            E(
                "attachment",
                ("page_id:string:Page", "file_name:string:Name of the file", "content_base64:string:File bytes"),
            ),
            E("page_label", ("page_id:string:Page", "label:string:Label text")),
        ),
    ),
    Server(
        "notes",
        "Notion",
        "snake",
        (
            E(
                "notion_page",
                (
                    "parent_id:string:Parent page or database",
                    "title:string:Page title",
                    "properties:object:Database properties",
                ),
            ),
            E(
                "database",
                ("parent_id:string:Parent page", "title:string:Database title", "schema:object:Property schema"),
                (("query", "Query a Notion database with filters and sorts"),),
            ),
            E(
                "block",
                ("block_id:string:Block or page id", "children:array:Blocks to append"),
                (("append", "Append content blocks to a page"),),
            ),
            E("notion_comment", ("page_id:string:Page", "text:string:Comment text")),
            E("notion_user", ("user_id:string:User id", "include_bots:boolean:Include integrations")),
        ),
    ),
    Server(
        "websearch",
        "the web search engine",
        "snake",
        (
            E(
                "web_result",
                (
                    "query:string:Search terms",
                    "count:integer:How many results",
                    "freshness:enum:Only recent results:day|week|month",
                ),
                (("search", "Search the web and return titles, URLs and snippets"),),
            ),
            E(
                "news_article",
                (
                    "query:string:Search terms",
                    "country:string:Two-letter country code",
                    "freshness:enum:Only recent articles:day|week|month",
                ),
                (("search", "Search recent news articles about a topic"),),
            ),
            E(
                "image",
                ("query:string:Search terms", "safe_search:enum:Filter level:off|moderate|strict"),
                (("search", "Search the web for images"),),
            ),
            E(
                "web_page",
                ("url:string:Address of the page", "format:enum:Output format:markdown|html|text"),
                (("fetch", "Fetch a web page by URL and return its content as markdown"),),
            ),
            E(
                "suggestion",
                ("query:string:Partial search terms", "count:integer:How many suggestions"),
                (("autocomplete", "Suggest search terms that complete a partial query"),),
            ),
        ),
    ),
    Server(
        "browser",
        "the headless browser (Playwright)",
        "snake",
        (
            E(
                "page",
                ("url:string:Address to open", "wait_until:enum:Load state:load|domcontentloaded|networkidle"),
                (("navigate", "Navigate the browser to a URL"), ("reload", "Reload the current page")),
            ),
            E(
                "element",
                ("selector:string:CSS or text selector", "timeout_ms:integer:How long to wait"),
                (("click", "Click an element on the page"), ("hover", "Hover the mouse over an element")),
            ),
            E(
                "form",
                ("fields:object:Selector → value to type", "submit:boolean:Press Enter after filling"),
                (("fill", "Fill in form fields on the page"),),
            ),
            E(
                "screenshot",
                ("full_page:boolean:Capture the whole scrollable page", "selector:string:Only this element"),
                (("take", "Take a screenshot of the current web page"),),
            ),
            E(
                "script",
                ("expression:string:JavaScript to evaluate", "arg:object:Argument passed to it"),
                (("evaluate", "Evaluate JavaScript in the page and return the result"),),
            ),
        ),
    ),
    Server(
        "sms",
        "Twilio",
        "kebab",
        (
            E(
                "message",
                ("to:string:Phone number in E.164", "from_number:string:Your Twilio number", "body:string:Text"),
                (("send", "Send an SMS text message to a phone number"),),
            ),
            E(
                "call",
                (
                    "to:string:Phone number in E.164",
                    "from_number:string:Your Twilio number",
                    "twiml:string:Call script",
                ),
                (("hangup", "Hang up a call in progress"),),
            ),
            E(
                "phone_number",
                ("area_code:string:Preferred area code", "country:string:Two-letter country code"),
                (("buy", "Buy (provision) a new phone number"),),
            ),
            E("recording", ("call_sid:string:Call", "format:enum:Audio format:mp3|wav")),
            E("conversation", ("friendly_name:string:Label", "participants:array:Phone numbers")),
        ),
    ),
    Server(
        "shop",
        "the Shopify store",
        "camel",
        (
            E(
                "product",
                (
                    "title:string:Product title",
                    "vendor:string:Brand",
                    "price:number:Price in store currency",
                    "status:enum:Visibility:active|draft|archived",
                ),
            ),
            E(
                "order",
                ("customer_id:string:Customer", "line_items:array:Products and quantities", "note:string:Order note"),
                (
                    ("fulfill", "Fulfill (ship) an order and send tracking information"),
                    ("cancel", "Cancel an order and optionally refund and restock it"),
                ),
            ),
            E("shop_customer", ("email:string:E-mail", "first_name:string:Given name", "tags:array:Customer tags")),
            E(
                "inventory_level",
                (
                    "inventory_item_id:string:Item",
                    "location_id:string:Warehouse or store location",
                    "available:integer:Units in stock",
                ),
                (("adjust", "Adjust how many units of a product are in stock at a location"),),
            ),
            E("discount", ("code:string:Discount code", "percentage:number:Percent off", "ends_at:string:Expiry")),
        ),
    ),
    Server(
        "design",
        "Figma",
        "camel",
        (
            E("design_file", ("file_key:string:File key from the URL", "depth:integer:How deep to walk the document")),
            E(
                "design_comment",
                ("file_key:string:File key", "message:string:Comment text", "position:object:Where to pin it (x, y)"),
            ),
            E("component", ("file_key:string:File key", "node_id:string:Node id", "description:string:What it is for")),
            E(
                "image_export",
                (
                    "file_key:string:File key",
                    "node_ids:array:Nodes to render",
                    "format:enum:Image format:png|jpg|svg|pdf",
                ),
                (("render", "Render (export) frames or nodes as images"),),
            ),
            E("design_project", ("team_id:string:Team", "name:string:Project name")),
        ),
    ),
    Server(
        "support",
        "Zendesk",
        "snake",
        (
            E(
                "ticket",
                (
                    "subject:string:Ticket subject",
                    "comment:string:First comment",
                    "requester_email:string:Customer",
                    "priority:enum:Priority:low|normal|high|urgent",
                ),
                (
                    ("close", "Close (solve) a support ticket"),
                    ("escalate", "Escalate a support ticket to the next tier"),
                ),
            ),
            E("support_user", ("email:string:E-mail", "name:string:Full name", "role:enum:Role:end-user|agent|admin")),
            E("organization", ("name:string:Organization name", "domain_names:array:E-mail domains")),
            E(
                "macro",
                ("title:string:Macro name", "actions:array:Ticket changes it applies"),
                (("apply", "Apply a macro (canned response) to a ticket"),),
            ),
            E("help_article", ("section_id:string:Help-center section", "title:string:Title", "body:string:HTML body")),
        ),
    ),
    Server(
        "storage",
        "S3 object storage",
        "kebab",
        (
            E(
                "bucket",
                ("name:string:Bucket name", "region:string:AWS region", "versioning:boolean:Keep object versions"),
            ),
            E(
                "object",
                ("bucket:string:Bucket name", "key:string:Object key (path)", "content_type:string:MIME type"),
                (
                    ("download", "Download an object (file) from a bucket"),
                    ("upload", "Upload a file to a bucket as an object"),
                ),
            ),
            E(
                "presigned_url",
                ("bucket:string:Bucket", "key:string:Object key", "expires_in:integer:Seconds"),
                (("generate", "Generate a temporary link to download or upload an object"),),
            ),
            E(
                "lifecycle_rule",
                ("bucket:string:Bucket", "prefix:string:Key prefix", "expire_days:integer:Delete after"),
            ),
            E("bucket_policy", ("bucket:string:Bucket", "policy:object:IAM policy document"), plural="bucket_policies"),
        ),
    ),
    Server(
        "ci",
        "Jenkins CI",
        "snake",
        (
            E(
                "pipeline",
                ("name:string:Pipeline name", "repository:string:Git repository URL", "branch:string:Branch"),
                (("trigger", "Trigger a new run (build) of a CI pipeline"),),
            ),
            E(
                "build",
                ("pipeline:string:Pipeline name", "number:integer:Build number"),
                (("abort", "Abort (stop) a running build"), ("console", "Get the console output (log) of a build")),
            ),
            E(
                "artifact",
                ("pipeline:string:Pipeline name", "build_number:integer:Build", "path:string:Artifact path"),
                (("download", "Download a build artifact"),),
            ),
            E(
                "agent",
                ("name:string:Agent (node) name", "labels:array:Labels jobs can target"),
                (("disable", "Take a build agent offline"),),
            ),
            E(
                "credential",
                ("id:string:Credential id", "kind:enum:Credential kind:username_password|ssh_key|secret_text"),
            ),
        ),
    ),
    Server(
        "secrets",
        "HashiCorp Vault",
        "snake",
        (
            E(
                "secret",
                (
                    "path:string:Secret path, e.g. kv/data/app",
                    "data:object:Key/value pairs",
                    "cas:integer:Check-and-set version",
                ),
                (
                    ("rotate", "Rotate a secret: write a new random value and keep the old version"),
                    ("read", "Read the latest version of a secret"),
                ),
            ),
            E("policy", ("name:string:Policy name", "rules:string:HCL policy text"), plural="policies"),
            E(
                "token",
                (
                    "policies:array:Policies to attach",
                    "ttl:string:Lifetime such as 1h",
                    "renewable:boolean:Can be renewed",
                ),
                (("revoke", "Revoke a token and its children"),),
            ),
            E(
                "lease",
                ("lease_id:string:Lease id", "increment:integer:Seconds to extend"),
                (("renew", "Renew a lease before it expires"),),
            ),
            E("audit_device", ("path:string:Mount path", "type:enum:Device type:file|syslog|socket")),
        ),
    ),
    Server(
        "maps",
        "the maps service",
        "snake",
        (
            E(
                "place",
                (
                    "query:string:What to look for, e.g. 'coffee'",
                    "location:object:Center point (lat, lng)",
                    "radius_m:integer:Search radius in metres",
                ),
                (("search", "Search for places such as shops or restaurants near a location"),),
            ),
            E(
                "route",
                (
                    "origin:string:Start address or coordinates",
                    "destination:string:End address or coordinates",
                    "mode:enum:Travel mode:driving|walking|bicycling|transit",
                ),
                (("compute", "Compute directions between two addresses for driving, walking or transit"),),
            ),
            E(
                "geocode",
                ("address:string:Street address", "region:string:Region bias"),
                (("forward", "Convert (geocode) a street address into latitude and longitude"),),
            ),
            E(
                "distance_matrix",
                (
                    "origins:array:Start points",
                    "destinations:array:End points",
                    "mode:enum:Travel mode:driving|walking|bicycling|transit",
                ),
                (("compute", "Compute travel times and distances between many origins and destinations"),),
            ),
            E(
                "time_zone",
                ("location:object:Point (lat, lng)", "timestamp:integer:When, epoch seconds"),
                (("lookup", "Look up the time zone of a point on the map"),),
            ),
        ),
    ),
)

_STANDARD_VERBS = ("create", "get", "list", "update", "delete", "search")

QUERIES: tuple[tuple[str, str], ...] = (
    ("open a new issue in the bug tracker", "tracker-create_issue"),
    ("merge a pull request", "github-merge_pull_request"),
    ("send a message to the team chat channel", "chat-sendMessage"),
    ("read the contents of a file on disk", "fs-read_file"),
    ("run a SQL query against the database", "postgres-execute_query"),
    ("restart a crashed pod", "k8s-restart-pod"),
    ("scale the deployment to more replicas", "k8s-scale-deployment"),
    ("refund a customer's payment", "payments-createRefund"),
    ("schedule a meeting with attendees", "calendar-create_event"),
    ("find emails about the quarterly report", "mail-search_emails"),
    ("share a document with a colleague", "drive-share_file"),
    ("take a screenshot of the web page", "browser-take_screenshot"),
    ("search recent news articles about a topic", "websearch-search_news_articles"),
    ("driving directions from one address to another", "maps-compute_route"),
    ("cancel a subscription", "payments-cancelSubscription"),
    ("close a customer support ticket", "support-close_ticket"),
    ("rotate a secret in vault", "secrets-rotate_secret"),
    ("download a file from an S3 bucket", "storage-download-object"),
    ("trigger a new build of the CI pipeline", "ci-trigger_pipeline"),
    ("silence an alerting monitor", "metrics-mute_monitor"),
    ("send an SMS text message to a phone number", "sms-send-message"),
    ("how many units are in stock", "shop-adjustInventoryLevel"),
)


def tool_name(style: str, verb: str, entity: str) -> str:
    words = [verb, *entity.split("_")]
    if style == "camel":
        return words[0] + "".join(w.capitalize() for w in words[1:])
    if style == "kebab":
        return "-".join(words)
    return "_".join(words)


def _property(spec: str) -> tuple[str, dict[str, Any]]:
    name, kind, description, *enum = spec.split(":", 3)
    schema: dict[str, Any]
    if kind == "enum":
        schema = {"type": "string", "enum": enum[0].split("|")}
    elif kind == "array":
        schema = {"type": "array", "items": {"type": "string"}}
    elif kind == "object":
        schema = {"type": "object", "additionalProperties": {"type": "string"}}
    else:
        schema = {"type": kind}
    schema["description"] = description
    return name, schema


def _schema(properties: list[str], required: list[str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    props = dict(_property(p) for p in properties)
    props.update(extra or {})
    return {"type": "object", "properties": props, "required": required}


_ID = "id:string:Identifier of the {e}"
_PAGING = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 25, "description": "Page size"},
    "cursor": {"type": "string", "description": "Cursor from the previous page; omit for the first page"},
}


def _describe(verb: str, entity: Entity, system: str, first: str | None) -> tuple[str, dict[str, Any]]:
    e, es = entity.name.replace("_", " "), entity.many.replace("_", " ")
    fields = list(entity.fields)
    required = [f.split(":", 1)[0] for f in fields[:2]]
    id_field = _ID.format(e=e)
    if verb == "create":
        text = (
            f"Create a new {e} in {system}. Requires {' and '.join(required)}; the other fields are optional. "
            f"Returns the created {e}, including its id and URL."
        )
        extra = {"idempotency_key": {"type": "string", "description": "Retries with the same key create one object"}}
        if len(fields) >= 3:
            extra["metadata"] = {
                "type": "object",
                "description": "Your own data, stored with the object",
                "properties": {
                    "source": {"type": "string", "description": "Which system created it"},
                    "tags": {"type": "array", "items": {"type": "string"}, "description": "Free tags"},
                },
            }
        return text, _schema(fields, required, extra)
    if verb == "get":
        text = (
            f"Get a single {e} from {system} by its id. Returns every field of the {e}, including "
            "timestamps and links. Fails with a not-found error when the id does not exist."
        )
        expand = {
            "expand": {
                "type": "array",
                "items": {"type": "string", "enum": ["owner", "history", "links"]},
                "description": "Related objects to include",
            }
        }
        return text, _schema([id_field], ["id"], expand)
    if verb == "list":
        text = (
            f"List {es} in {system}, newest first. Results are paginated: pass the returned cursor to get "
            "the next page. Use the filter to narrow the results down."
        )
        flt = {
            "filter": {
                "type": "object",
                "description": "Conditions every result must meet",
                "properties": {
                    "created_after": {
                        "type": "string",
                        "format": "date-time",
                        "description": "Only items created after this time",
                    },
                    "owner": {"type": "string", "description": "Only items of this owner"},
                },
            },
            "order": {"type": "string", "enum": ["asc", "desc"], "description": "Sort direction"},
            "sort_by": {"type": "string", "enum": ["created", "updated", "name"], "description": "Sort key"},
            "include_archived": {"type": "boolean", "default": False, "description": "Also list archived ones"},
        }
        return text, _schema([], [], {**_PAGING, **flt})
    if verb == "update":
        text = (
            f"Update an existing {e} in {system}. Only the fields given in changes are modified; the others "
            "keep their values. Returns the updated object."
        )
        changes = {
            "changes": {
                "type": "object",
                "description": "Fields to change",
                "properties": dict(_property(f) for f in fields),
            }
        }
        fields_ = [
            id_field,
            "notify:boolean:Tell watchers about the change",
            "expected_version:integer:Fail if the object changed since this version",
        ]
        return text, _schema(fields_, ["id", "changes"], changes)
    if verb == "delete":
        text = (
            f"Delete a {e} from {system} permanently. This cannot be undone. Set confirm to true to proceed; "
            "without it the call only reports what would be deleted."
        )
        return text, _schema([id_field, "confirm:boolean:Really delete"], ["id", "confirm"])
    if verb == "search":
        text = (
            f"Search {es} in {system} by keyword. The query is matched against the text fields of each "
            f"{e}. Returns at most limit results ranked by relevance."
        )
        return text, _schema(
            ["query:string:Keywords to look for", "match:enum:How words combine:all|any|phrase"],
            ["query"],
            {"limit": _PAGING["limit"]},
        )
    assert first is not None
    text = (
        f"{first}. Works on {es} in {system}; the {e} is identified by its id and the call is audited. "
        f"Returns the {e} after the change."
    )
    params = [id_field, *fields[:3]] if len(fields) >= 2 else [id_field]
    return text, _schema(
        params,
        ["id"],
        {"dry_run": {"type": "boolean", "default": False, "description": "Only check that the call would succeed"}},
    )


def generated_tools(server: Server, count: int = 20) -> list[types.Tool]:
    """`count` tools of one server: every special verb, then standard verbs, in a stable shuffled order."""
    candidates: list[tuple[str, Entity, str | None]] = []
    for entity in server.entities:
        candidates += [(verb, entity, first) for verb, first in entity.extras]
    # The main entity gets every standard verb and every entity can be created; the rest is a stable shuffle.
    main = server.entities[0]
    standard = [(verb, main, None) for verb in _STANDARD_VERBS]
    standard += [("create", entity, None) for entity in server.entities[1:]]
    rest = [(verb, entity, None) for entity in server.entities[1:] for verb in _STANDARD_VERBS if verb != "create"]
    random.Random(server.name).shuffle(rest)
    seen = {(verb, entity.name) for verb, entity, _ in candidates}
    for verb, entity, first in standard + rest:
        if (verb, entity.name) not in seen:
            seen.add((verb, entity.name))
            candidates.append((verb, entity, first))
    tools = []
    for verb, entity, first in candidates[:count]:
        description, schema = _describe(verb, entity, server.system, first)
        noun = entity.many if verb in ("list", "search") else entity.name
        tools.append(types.Tool(name=tool_name(server.style, verb, noun), description=description, input_schema=schema))
    return tools


def generated_catalog() -> dict[str, list[types.Tool]]:
    """Upstream name → its 20 tools (original names); 25 upstreams, 500 tools."""
    return {server.name: generated_tools(server) for server in SERVERS}
