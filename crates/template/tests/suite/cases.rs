//! The table of (variables, template, expected output) cases.
//!
//! Sources: Octostache's test fixtures (UsageFixture, FiltersFixture, ConditionalsFixture,
//! IterationFixture, JsonFixture, CalculationFixture, VersionFixture) and the examples of
//! Octopus's documentation pages "Variable substitutions" and "Variable filters", re-expressed
//! here; plus Ferry's own cases. Where Ferry deliberately differs, the case says so.
//! All cases render with the clock from `super::options()` (2016-11-03T08:53:11.0946448+10:00).

use ferry_template::render;

type Vars = &'static [(&'static str, &'static str)];
type Case = (Vars, &'static str, &'static str);

const NONE: Vars = &[];
const ACTIONS: Vars = &[
    ("Octopus.Action[Package A].Name", "A"),
    ("Octopus.Action[Package B].Name", "B"),
    ("Octopus.Action[].Name", "Blank"),
];
const STEPS: Vars = &[
    ("Octopus.Action[Action 1].StepName", "Step 1"),
    ("Octopus.Action[Action 2].StepName", "Step 2"),
    ("Octopus.Step[Step 1].Details", "Step 1 Details"),
    ("Octopus.Step[Step 2].Details", "Step 2 Details"),
    ("Octopus.Step[Step 1].Status", "Skipped"),
    ("Octopus.Step[Step 2].Status", "Running"),
];
const TRUTHY: Vars = &[
    ("Result", "result"),
    ("Truthy", "true"),
    ("ElseResult", "elseresult"),
    ("Fooey", "foo"),
];
const FALSY: Vars = &[
    ("Result", "result"),
    ("Truthy", "false"),
    ("ElseResult", "elseresult"),
    ("Fooey", "foo"),
];
const OCTOPUS_DEPLOY: Vars = &[("foo", "Octopus Deploy")];
const PADDED: Vars = &[("foo", " Octopus Deploy ")];
const LINES: Vars = &[("foo", "Octopus Deploy\nOctopus Deploy\nOctopus Deploy")];
const ABC_DEF: Vars = &[("foo", "abc def")];
const ABC_QUOTE_DEF: Vars = &[("foo", "abc'def")];
const BAR: Vars = &[("foo", "bar")];
const EMPTY_FOO: Vars = &[("foo", "")];
const FOX: Vars = &[("foo", "The quick brown fox jumps over the lazy dog")];
const FOX_DOT: Vars = &[("foo", "The quick brown fox jumps over the lazy dog.")];
const FOX_B64: Vars = &[(
    "foo",
    "VGhlIHF1aWNrIGJyb3duIGZveCBqdW1wcyBvdmVyIHRoZSBsYXp5IGRvZw==",
)];
const CALC: Vars = &[
    ("A", "5"),
    ("B", "7"),
    ("The/Var", "9"),
    ("Another-Var", "11"),
];
const DATE: Vars = &[("Foo", "2030/05/22 09:05:00"), ("Format", "HH dd-MMM-yyyy")];
const MYVAR_ABC: Vars = &[
    ("MyVar", "abc"),
    ("match", "b"),
    ("replace", "_"),
    ("pattern", "abc"),
];
const ENDPOINTS: Vars = &[
    ("Endpoint[A].Address", "http://a.example.com"),
    ("Endpoint[A].Description", "Primary"),
    ("Endpoint[B].Address", "http://b.example.com"),
    ("Endpoint[B].Description", "Replica"),
];
const KEYED: Vars = &[
    ("Simple[a]", "5"),
    ("Simple[b]", "7"),
    ("NoDirect[a].Name", "Alpha"),
    ("NoDirect[b].Name", "Beta"),
    ("Cert[a]", "Certificate-1"),
    ("Cert[a].Thumbprint", "AAA"),
    ("Cert[b]", "Certificate-2"),
    ("Cert[b].Thumbprint", "BBB"),
];
const JSON_OVERRIDE: Vars = &[
    ("Test.Hello", "Go Away"),
    (
        "Test",
        r#"{"Hello": "World", "Foo": "Bar", "Donkey" : {"Kong": 12}}"#,
    ),
    ("Test[Foo]", "Nope"),
    ("Test.Donkey.Kong", "MARIO"),
];
const JSON_TEMPLATED: Vars = &[
    ("Prop", "Foo"),
    ("Val", "Bar"),
    ("Test", "{#{Prop}: \"#{Val}\"}"),
];
const SHIRT: Vars = &[
    (
        "Custom.MyJson",
        r#"{Name: "t-shirt", Description: "I am a shirt", Sizes: [{size: "small", price: 15.00}, {size: "large", price: 20.00}]}"#,
    ),
    ("Custom.MyJson.Description", "Shirts are not shorts."),
];
const PETS: Vars = &[
    ("MyNumbers", "[5,2,4]"),
    (
        "MyObjects",
        r#"{Cat: {Price: 11.5, Description: "Meow"}, Dog: {Price: 17.5, Description: "Woof"}}"#,
    ),
];
const WIDGETS: Vars = &[
    ("WidgetIdSelector", "Widget-2"),
    (
        "MyWidgets",
        r#"{"One":{"WidgetId":"Widget-1","Name":"Widget-One"},"Two":{"WidgetId":"Widget-2","Name":"Widget-Two"}}"#,
    ),
];
const VERSION_TEMPLATE: &str = "#{V | VersionMajor}|#{V | VersionMinor}|#{V | VersionPatch}|#{V | VersionRevision}|#{V | VersionPreRelease}|#{V | VersionPreReleasePrefix}|#{V | VersionPreReleaseCounter}|#{V | VersionMetadata}";

const CASES: &[Case] = &[
    // --- Basic substitution (UsageFixture) ---
    (&[("Foo", "Bar")], "#{Foo}", "Bar"),
    (&[("foo", "Bar")], "#{Foo}", "Bar"),
    (&[("Foo", "#{Bar}"), ("Bar", "Baz")], "#{Foo}", "Baz"),
    (
        &[("Foo", "#{Bar | ToLower}"), ("Bar", "Baz")],
        "#{Foo}",
        "baz",
    ),
    (&[("Foo Bar Jazz", "Bar")], "#{Foo Bar Jazz}", "Bar"),
    (
        &[("Foo", "#{Bar | ToLower}"), ("Bar", "Baz")],
        "#{Foo|ToUpper}",
        "BAZ",
    ),
    (&[("Foo", "baz")], "#{Foo | ToUpper}", "BAZ"),
    (&[("foo", "Bar")], "##{Foo}", "#{Foo}"),
    (NONE, "#{Foo}", "#{Foo}"),
    (
        &[("Foo", "#{Bar}"), ("Bar", "Baz")],
        "#{Foo}#{Jazz}",
        "Baz#{Jazz}",
    ),
    (
        &[("Action[x].Name", "Baz"), ("Action[y].Name", "Baz")],
        "#{each a in Action}#{a.Size}#{/each}",
        "#{a.Size}#{a.Size}",
    ),
    // Malformed constructs are kept as text.
    (&[("Foo", "Bar")], "#{Foo", "#{Foo"),
    (&[("Foo", "Bar"), ("Fo[o]", "Bar")], "#{Fo[o}", "#{Fo[o}"),
    (
        &[("Action[a]", "One")],
        "#{each a in Action}",
        "#{each a in Action}",
    ),
    (&[("a/b", "Foo")], "#{a/b}", "Foo"),
    (&[("a~b", "Foo")], "#{a~b}", "Foo"),
    (&[("(abc)", "Foo")], "#{(abc)}", "Foo"),
    (&[("Foo", "Value"), (" ", "Bar")], "#{ }", "#{ }"),
    (&[("Foo", "Value"), ("", "Bar")], "#{}", "#{}"),
    (
        &[("Octopus.Action[Package A].Name", "Package A")],
        "#{Octopus.Action[Package A].Name}",
        "Package A",
    ),
    (NONE, "Ok#{each nothing in missing}#{nothing}#{/each}", "Ok"),
    (
        &[
            ("Web.Root", "Subbed.Web.Root"),
            ("Wsf.Host", "Subbed.Wsf.Host"),
        ],
        "i=\"#{Web.Root}\";var l=\"#{Wsf.Host}\";a=function(e){return\"#{\"===e.substr(0,2)}",
        "i=\"Subbed.Web.Root\";var l=\"Subbed.Wsf.Host\";a=function(e){return\"#{\"===e.substr(0,2)}",
    ),
    (
        &[("Web.Root", "R")],
        "i=\"#{Web.Root}\";a=function(e){return\"#{",
        "i=\"R\";a=function(e){return\"#{",
    ),
    (
        STEPS,
        "#{each action in Octopus.Action}#{if Octopus.Step[#{action.StepName}].Status != \"Skipped\"}#{Octopus.Step[#{action.StepName}].Details}#{/if}#{/each}",
        "Step 2 Details",
    ),
    (
        &[
            ("Octopus.Action[Action 1].StepName", "Step 1"),
            ("Octopus.Action[Action 2].StepName", "Step 2"),
            ("Octopus.Step[OtherVariableValue].Details", "Octopus"),
            ("Octopus.Step[OtherVariableValue].Status", "Skipped"),
            ("SomeOtherVariable", "OtherVariableValue"),
        ],
        "#{each action in Octopus.Action}#{if Octopus.Step[#{SomeOtherVariable}].Status == \"Skipped\"}#{Octopus.Step[#{SomeOtherVariable}].Details}#{/if}#{/each}",
        "OctopusOctopus",
    ),
    (
        &[
            ("action.StepName", "Step 1"),
            ("Octopus.Step[Step 1].Status.Code", "Running"),
        ],
        "#{Octopus.Step[#{action.StepName}].Status.Code}",
        "Running",
    ),
    (ACTIONS, "#{Octopus.Action[*].Name}", "A"),
    (
        ACTIONS,
        "#{each a in Octopus.Action}#{a}|#{/each}",
        "Package A|Package B||",
    ),
    (NONE, "#{foo}", "#{foo}"),
    (NONE, "#{foo | ToUpper}", "#{foo | ToUpper}"),
    (
        &[("Foo", "Abc")],
        "#{Foo | ToBazooka}",
        "#{Foo | ToBazooka}",
    ),
    (&[("Foo", "Abc")], "#{Foo | ToUpper}", "ABC"),
    (&[("Foo", "Abc")], "#{Foo|ToUpper|ToLower}", "abc"),
    (&[("foo", "Abc")], "##{foo}", "#{foo}"),
    (&[("foo", "Abc")], "###{foo}", "#Abc"),
    (NONE, "# ## ###", "# ## ###"),
    (NONE, "###### hello", "###### hello"),
    (NONE, "####### world", "####### world"),
    (
        &[
            ("Server", "Web01"),
            ("Port", "10933"),
            ("Url", "http://#{Server | ToLower}:#{Port}"),
        ],
        "#{Url}/foo",
        "http://web01:10933/foo",
    ),
    (&[("Protocol", "#{Proto}")], "#{Protocol}", "#{Proto}"),
    // --- Filters (FiltersFixture) ---
    (NONE, "#{Foo.Bar | HtmlEscape}", "#{Foo.Bar | HtmlEscape}"),
    (NONE, "#{Foo.Bar | ToUpper}", "#{Foo.Bar | ToUpper}"),
    (NONE, "#{Foo.Bar | Markdown}", "#{Foo.Bar | Markdown}"),
    (
        NONE,
        "#{Foo.Bar | MarkdownToHtml}",
        "#{Foo.Bar | MarkdownToHtml}",
    ),
    (
        &[("Foo", "Abc")],
        "#{Foo | ToBazooka 6}",
        "#{Foo | ToBazooka 6}",
    ),
    (&[("Foo", "A&'bc")], "#{Foo | HtmlEscape}", "A&amp;&apos;bc"),
    (&[("Foo", "")], "#{Foo | HtmlEscape}", ""),
    (
        &[("Foo", "A b:c+d/e")],
        "#{Foo | UriDataEscape}",
        "A%20b%3Ac%2Bd%2Fe",
    ),
    (&[("Foo", "")], "#{Foo | UriDataEscape}", ""),
    (&[("Foo", "A b:c+d/e")], "#{Foo | UriEscape}", "A%20b:c+d/e"),
    (&[("Foo", "A&'bc")], "#{Foo | XmlEscape}", "A&amp;&apos;bc"),
    (
        &[("Foo", "Test\"Test")],
        "#{Foo | JsonEscape}",
        "Test\\\"Test",
    ),
    (
        &[("Foo", "Test\rTest")],
        "#{Foo | JsonEscape}",
        "Test\\rTest",
    ),
    (
        &[("Foo", "Test\nTest")],
        "#{Foo | JsonEscape}",
        "Test\\nTest",
    ),
    (
        &[("Foo", "Test\tTest")],
        "#{Foo | JsonEscape}",
        "Test\\tTest",
    ),
    (
        &[("Foo", "Test\\Test")],
        "#{Foo | JsonEscape}",
        "Test\\\\Test",
    ),
    (
        &[("Foo", "single'quote")],
        "#{Foo | YamlSingleQuoteEscape}",
        "single''quote",
    ),
    (&[("Foo", "\\'")], "#{Foo | YamlSingleQuoteEscape}", "\\''"),
    (
        &[("Foo", "a\n\tb\n\tc\n\td")],
        "#{Foo | YamlSingleQuoteEscape}",
        "a\n\n\tb\n\n\tc\n\n\td",
    ),
    (
        &[("Foo", "a\r\nb")],
        "#{Foo | YamlSingleQuoteEscape}",
        "a\r\n\r\nb",
    ),
    (
        &[("Foo", "a\n\r\nb")],
        "#{Foo | YamlSingleQuoteEscape}",
        "a\n\n\r\nb",
    ),
    (&[("Foo", "")], "#{Foo | YamlSingleQuoteEscape}", ""),
    (
        &[("Foo", "double\"quote")],
        "#{Foo | YamlDoubleQuoteEscape}",
        "double\\\"quote",
    ),
    (&[("Foo", "\\")], "#{Foo | YamlDoubleQuoteEscape}", "\\\\"),
    (&[("Foo", "\"")], "#{Foo | YamlDoubleQuoteEscape}", "\\\""),
    (&[("Foo", "\t")], "#{Foo | YamlDoubleQuoteEscape}", "\\t"),
    (&[("Foo", "\n")], "#{Foo | YamlDoubleQuoteEscape}", "\\n"),
    (
        &[("Foo", "\r\n")],
        "#{Foo | YamlDoubleQuoteEscape}",
        "\\r\\n",
    ),
    (
        &[("Foo", "a\n\tb\n\tc\n\td")],
        "#{Foo | YamlDoubleQuoteEscape}",
        "a\\n\\tb\\n\\tc\\n\\td",
    ),
    (
        &[("Foo", "a\r\nb")],
        "#{Foo | YamlDoubleQuoteEscape}",
        "a\\r\\nb",
    ),
    (
        &[("Foo", "single'quote")],
        "#{Foo | YamlDoubleQuoteEscape}",
        "single'quote",
    ),
    (
        &[("Foo", "我叫章鱼")],
        "#{Foo | YamlDoubleQuoteEscape}",
        "\\u6211\\u53eb\\u7ae0\\u9c7c",
    ),
    (
        &[("Foo", "\u{1F600}")],
        "#{Foo | YamlDoubleQuoteEscape}",
        "\\ud83d\\ude00",
    ),
    (&[("Foo", " ")], "#{Foo | PropertiesKeyEscape}", "\\ "),
    (&[("Foo", ":")], "#{Foo | PropertiesKeyEscape}", "\\:"),
    (&[("Foo", "=")], "#{Foo | PropertiesKeyEscape}", "\\="),
    (&[("Foo", "\\")], "#{Foo | PropertiesKeyEscape}", "\\\\"),
    (&[("Foo", "\r")], "#{Foo | PropertiesKeyEscape}", "\\r"),
    (&[("Foo", "\n")], "#{Foo | PropertiesKeyEscape}", "\\n"),
    (&[("Foo", "\t")], "#{Foo | PropertiesKeyEscape}", "\\t"),
    (
        &[("Foo", " a \n b ")],
        "#{Foo | PropertiesKeyEscape}",
        "\\ a\\ \\n\\ b\\ ",
    ),
    (
        &[("Foo", "abcdefghijklmnopqrstuvwxyz")],
        "#{Foo | PropertiesKeyEscape}",
        "abcdefghijklmnopqrstuvwxyz",
    ),
    (
        &[("Foo", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")],
        "#{Foo | PropertiesKeyEscape}",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    ),
    (
        &[("Foo", "0123456789")],
        "#{Foo | PropertiesKeyEscape}",
        "0123456789",
    ),
    (
        &[("Foo", "我叫章鱼")],
        "#{Foo | PropertiesKeyEscape}",
        "\\u6211\\u53eb\\u7ae0\\u9c7c",
    ),
    (&[("Foo", "÷ü")], "#{Foo | PropertiesKeyEscape}", "÷ü"),
    (&[("Foo", ":")], "#{Foo | PropertiesValueEscape}", ":"),
    (&[("Foo", "=")], "#{Foo | PropertiesValueEscape}", "="),
    (&[("Foo", " ")], "#{Foo | PropertiesValueEscape}", "\\ "),
    (&[("Foo", "a ")], "#{Foo | PropertiesValueEscape}", "a "),
    (&[("Foo", "\\")], "#{Foo | PropertiesValueEscape}", "\\\\"),
    (&[("Foo", "\r")], "#{Foo | PropertiesValueEscape}", "\\r"),
    (&[("Foo", "\n")], "#{Foo | PropertiesValueEscape}", "\\n"),
    (&[("Foo", "\t")], "#{Foo | PropertiesValueEscape}", "\\t"),
    (
        &[("Foo", " a \n b ")],
        "#{Foo | PropertiesValueEscape}",
        "\\ a \\n b ",
    ),
    (
        &[("Foo", "0123456789")],
        "#{Foo | PropertiesValueEscape}",
        "0123456789",
    ),
    (
        &[("Foo", "我叫章鱼")],
        "#{Foo | PropertiesValueEscape}",
        "\\u6211\\u53eb\\u7ae0\\u9c7c",
    ),
    (&[("Foo", "÷ü")], "#{Foo | PropertiesValueEscape}", "÷ü"),
    (
        DATE,
        "#{Foo | Format Date \"HH dd-MMM-yyy\"}",
        "09 22-May-2030",
    ),
    (DATE, "#{Foo | Format Date #{Format}}", "09 22-May-2030"),
    (&[("Cash", "23.4")], "#{Cash | Format Double C}", "$23.40"),
    (
        &[("MyDate", "2030/05/22 09:05:00")],
        "#{MyDate | Format DateTime \"HH dd-MMM-yyyy\" }",
        "09 22-May-2030",
    ),
    (
        &[("MyDate", "2030/05/22 09:05:00")],
        "#{MyDate | Format DateTime \\\"HH dd-MMM-yyyy\\\" }",
        "09 22-May-2030",
    ),
    (&[("Cash", "23.4")], "#{Cash | Format C}", "$23.40"),
    (
        &[("Date", "2030/05/22 09:05:00")],
        "#{ Date | Format yyyy}",
        "2030",
    ),
    (
        &[("Invalid", "hello World")],
        "#{Invalid | Format yyyy}",
        "#{Invalid | Format yyyy}",
    ),
    (NONE, "#{ | NowDate}", "2016-11-03T08:53:11.0946448"),
    (NONE, "#{ | NowDate yyyy}", "2016"),
    (
        &[("Foo", "{Bar: null}")],
        "Alpha#{Foo.Bar | ToUpper}bet",
        "Alphabet",
    ),
    (NONE, "#{ | NowDate | Format Date MMM}", "Nov"),
    (NONE, "#{ | NowDateUtc}", "2016-11-02T22:53:11.0946448Z"),
    (NONE, "#{ | NowDateUtc | Format DateTimeOffset zz}", "+00"),
    (NONE, "#{ | NowDate | Format DateTimeOffset zz}", "+10"),
    (
        &[("String", "Foo Bar")],
        "#{String | tobase64}",
        "Rm9vIEJhcg==",
    ),
    (&[("foo", "abc")], "#{foo | Replace abc def}", "def"),
    (&[("foo", "abc")], "#{foo | Replace a}", "bc"),
    (&[("foo", "abc")], "#{foo | Replace}", "#{foo | Replace}"),
    (&[("foo", "ABC")], "#{foo | Replace abc def}", "ABC"),
    (
        &[("foo", "ab c")],
        "#{foo | Replace \"ab c\" \"d ef\"}",
        "d ef",
    ),
    (
        &[("foo", "abc"), ("regex", "b"), ("replacement", "x")],
        "#{foo | Replace #{regex}#{replacement}}",
        "axc",
    ),
    (
        &[("foo", "a\"b"), ("regex", "a\""), ("replacement", "\"c")],
        "#{foo | Replace #{regex}#{replacement}}",
        "\"cb",
    ),
    (&[("foo", "a'b")], "#{foo | Replace \"a'b\" \"d'e\"}", "d'e"),
    (&[("foo", "a'b")], "#{foo | Replace \"[a-z]+\" 1}", "1'1"),
    (
        &[("foo", "a(b")],
        "#{foo | Replace \"a\\(b\" \"d(e\"}",
        "d(e",
    ),
    (
        &[("foo", "opuocts")],
        "#{foo | Replace \"o(.+)o([a-z]*)s\" \"o$2o$1s\"}",
        "octopus",
    ),
    (&[("foo", "ababa")], "#{foo | Replace \"a\" x}", "xbxbx"),
    (&[("foo", "ababa")], "#{foo | Replace \"^a\" x}", "xbaba"),
    (&[("foo", "ababa")], "#{foo | Replace \"a$\" x}", "ababx"),
    (
        &[("foo", "ababa")],
        "#{foo | Substring}",
        "#{foo | Substring}",
    ),
    (
        &[("foo", "ababa")],
        "#{foo | Substring 1 2 3}",
        "#{foo | Substring 1 2 3}",
    ),
    (OCTOPUS_DEPLOY, "#{foo | Substring 7}", "Octopus"),
    (OCTOPUS_DEPLOY, "#{foo | Substring 8 6}", "Deploy"),
    (
        OCTOPUS_DEPLOY,
        "#{foo | Substring a}",
        "#{foo | Substring a}",
    ),
    (
        OCTOPUS_DEPLOY,
        "#{foo | Substring 0 a}",
        "#{foo | Substring 0 a}",
    ),
    (
        OCTOPUS_DEPLOY,
        "#{foo | Substring 20}",
        "#{foo | Substring 20}",
    ),
    (
        OCTOPUS_DEPLOY,
        "#{foo | Substring 8 7}",
        "#{foo | Substring 8 7}",
    ),
    (
        OCTOPUS_DEPLOY,
        "#{foo | Substring -1}",
        "#{foo | Substring -1}",
    ),
    (
        OCTOPUS_DEPLOY,
        "#{foo | Substring 0 -1}",
        "#{foo | Substring 0 -1}",
    ),
    (OCTOPUS_DEPLOY, "#{foo | Truncate}", "#{foo | Truncate}"),
    (OCTOPUS_DEPLOY, "#{foo | Truncate 50}", "Octopus Deploy"),
    (OCTOPUS_DEPLOY, "#{foo | Truncate a}", "#{foo | Truncate a}"),
    (
        OCTOPUS_DEPLOY,
        "#{foo | Truncate -1}",
        "#{foo | Truncate -1}",
    ),
    (OCTOPUS_DEPLOY, "#{foo | Truncate 7}", "Octopus..."),
    (PADDED, "#{foo | Trim}", "Octopus Deploy"),
    (PADDED, "#{foo | Trim start}", "Octopus Deploy "),
    (PADDED, "#{foo | Trim End}", " Octopus Deploy"),
    (OCTOPUS_DEPLOY, "#{foo | Substring 8 | Trim}", "Octopus"),
    (OCTOPUS_DEPLOY, "#{foo | Trim Both}", "#{foo | Trim Both}"),
    (EMPTY_FOO, "#{foo | Indent}", ""),
    (OCTOPUS_DEPLOY, "#{foo | Indent}", "    Octopus Deploy"),
    (
        LINES,
        "#{foo | Indent}",
        "    Octopus Deploy\n    Octopus Deploy\n    Octopus Deploy",
    ),
    (
        LINES,
        "#{foo | Indent 2}",
        "  Octopus Deploy\n  Octopus Deploy\n  Octopus Deploy",
    ),
    (
        LINES,
        "#{foo | Indent /3}",
        "Octopus Deploy\n   Octopus Deploy\n   Octopus Deploy",
    ),
    (
        LINES,
        "#{foo | Indent 3/2}",
        "   Octopus Deploy\n  Octopus Deploy\n  Octopus Deploy",
    ),
    (
        LINES,
        "#{foo | Indent //}",
        "//Octopus Deploy\n//Octopus Deploy\n//Octopus Deploy",
    ),
    (
        LINES,
        "#{foo | Indent \"/* \" \" * \"}",
        "/* Octopus Deploy\n * Octopus Deploy\n * Octopus Deploy",
    ),
    (
        LINES,
        "#{foo | Indent 256}",
        "256Octopus Deploy\n256Octopus Deploy\n256Octopus Deploy",
    ),
    (
        LINES,
        "#{foo | Indent /256}",
        "/256Octopus Deploy\n/256Octopus Deploy\n/256Octopus Deploy",
    ),
    (
        LINES,
        "#{foo | Indent 256/3}",
        "256/3Octopus Deploy\n256/3Octopus Deploy\n256/3Octopus Deploy",
    ),
    (
        &[("foo", "foo")],
        "#{foo | Indent abc 123 def}",
        "#{foo | Indent abc 123 def}",
    ),
    (&[("foo", "foo")], "#{ | Indent}", "#{ | Indent}"),
    (
        LINES,
        "#{ foo | Indent \\\"# \\\"}",
        "# Octopus Deploy\n# Octopus Deploy\n# Octopus Deploy",
    ),
    (
        &[("foo", "/docs")],
        "#{foo | UriPart Host}",
        "[UriPart Host error: This operation is not supported for a relative URI.]",
    ),
    (
        &[("foo", "https://octopus.com/docs")],
        "#{foo | UriPart}",
        "[UriPart error: no argument given]",
    ),
    (
        &[("foo", "https://octopus.com/docs")],
        "#{foo | UriPart bar}",
        "[UriPart bar error: argument 'bar' not supported]",
    ),
    (
        &[("foo", "https://octopus.com/docs")],
        "#{foo | UriPart AbsolutePath}",
        "/docs",
    ),
    (
        &[("foo", "https://octopus.com/docs")],
        "#{foo | UriPart AbsoluteUri}",
        "https://octopus.com/docs",
    ),
    (
        &[("foo", "https://octopus.com/docs")],
        "#{foo | UriPart Authority}",
        "octopus.com",
    ),
    (
        &[("foo", "https://octopus.com/docs")],
        "#{foo | UriPart DnsSafeHost}",
        "octopus.com",
    ),
    (
        &[("foo", "https://octopus.com/docs#filters")],
        "#{foo | UriPart Fragment}",
        "#filters",
    ),
    (
        &[("foo", "https://octopus.com/docs")],
        "#{foo | UriPart Host}",
        "octopus.com",
    ),
    (
        &[("foo", "https://octopus.com/docs")],
        "#{foo | UriPart HostAndPort}",
        "octopus.com:443",
    ),
    (
        &[("foo", "https://octopus.com/docs")],
        "#{foo | UriPart HostNameType}",
        "Dns",
    ),
    (
        &[("foo", "https://octopus.com/docs")],
        "#{foo | UriPart IsAbsoluteUri}",
        "true",
    ),
    (
        &[("foo", "https://octopus.com/docs")],
        "#{foo | UriPart IsDefaultPort}",
        "true",
    ),
    (
        &[("foo", "https://octopus.com/docs")],
        "#{foo | UriPart IsFile}",
        "false",
    ),
    (
        &[("foo", "https://octopus.com/docs")],
        "#{foo | UriPart IsLoopback}",
        "false",
    ),
    (
        &[("foo", "https://octopus.com/docs")],
        "#{foo | UriPart IsUnc}",
        "false",
    ),
    (
        &[("foo", "https://octopus.com/docs")],
        "#{foo | UriPart Path}",
        "/docs",
    ),
    (
        &[("foo", "https://octopus.com/docs?filter=faq")],
        "#{foo | UriPart PathAndQuery}",
        "/docs?filter=faq",
    ),
    (
        &[("foo", "https://octopus.com/docs")],
        "#{foo | UriPart Port}",
        "443",
    ),
    (
        &[("foo", "https://octopus.com/docs?filter=faq")],
        "#{foo | UriPart Query}",
        "?filter=faq",
    ),
    (
        &[("foo", "https://octopus.com/docs")],
        "#{foo | UriPart Scheme}",
        "https",
    ),
    (
        &[("foo", "https://octopus.com/docs")],
        "#{foo | UriPart SchemeAndServer}",
        "https://octopus.com",
    ),
    (
        &[("foo", "https://username:password@octopus.com")],
        "#{foo | UriPart UserInfo}",
        "username:password",
    ),
    (ABC_DEF, "#{foo | Match abc}", "true"),
    (ABC_DEF, "#{foo | Match cba}", "false"),
    (ABC_DEF, "#{foo | Match}", "#{foo | Match}"),
    (ABC_DEF, "#{foo | Match a b}", "#{foo | Match a b}"),
    (ABC_DEF, "#{foo | Match ABC}", "false"),
    (ABC_DEF, "#{foo | Match \"abc def\"}", "true"),
    (ABC_QUOTE_DEF, "#{foo | Match \"abc'def\"}", "true"),
    (ABC_DEF, "#{foo | Match \".*\"}", "true"),
    (&[("foo", "abc def1")], "#{foo | Match \"[0-9]+\"}", "true"),
    (&[("foo", "abc(def")], "#{foo | Match \"c\\(d\"}", "true"),
    (
        &[("foo", "abc def"), ("regex", "def")],
        "#{foo | Match #{regex}}",
        "true",
    ),
    (ABC_DEF, "#{foo | StartsWith abc}", "true"),
    (ABC_DEF, "#{foo | StartsWith bc}", "false"),
    (ABC_DEF, "#{foo | StartsWith}", "#{foo | StartsWith}"),
    (
        ABC_DEF,
        "#{foo | StartsWith a b}",
        "#{foo | StartsWith a b}",
    ),
    (ABC_DEF, "#{foo | StartsWith ABC}", "false"),
    (ABC_DEF, "#{foo | StartsWith \"abc d\"}", "true"),
    (ABC_QUOTE_DEF, "#{foo | StartsWith \"abc'\"}", "true"),
    (
        &[("foo", "abc def"), ("str", "abc")],
        "#{foo | StartsWith #{str}}",
        "true",
    ),
    (ABC_DEF, "#{foo | EndsWith def}", "true"),
    (ABC_DEF, "#{foo | EndsWith de}", "false"),
    (ABC_DEF, "#{foo | EndsWith}", "#{foo | EndsWith}"),
    (ABC_DEF, "#{foo | EndsWith a b}", "#{foo | EndsWith a b}"),
    (ABC_DEF, "#{foo | EndsWith DEF}", "false"),
    (ABC_DEF, "#{foo | EndsWith \"c def\"}", "true"),
    (ABC_QUOTE_DEF, "#{foo | EndsWith \"'def\"}", "true"),
    (
        &[("foo", "abc def"), ("str", "def")],
        "#{foo | EndsWith #{str}}",
        "true",
    ),
    (ABC_DEF, "#{foo | Contains de}", "true"),
    (ABC_DEF, "#{foo | Contains ed}", "false"),
    (ABC_DEF, "#{foo | Contains}", "#{foo | Contains}"),
    (ABC_DEF, "#{foo | Contains a b}", "#{foo | Contains a b}"),
    (ABC_DEF, "#{foo | Contains ABC}", "false"),
    (ABC_DEF, "#{foo | Contains \"c de\"}", "true"),
    (ABC_QUOTE_DEF, "#{foo | Contains \"'de\"}", "true"),
    (
        &[("foo", "abc def"), ("str", "c d")],
        "#{foo | Contains #{str}}",
        "true",
    ),
    (NONE, "#{|Append foo}", "foo"),
    (BAR, "#{foo | Append}", "#{foo | Append}"),
    (BAR, "#{ | Append}", "#{ | Append}"),
    (BAR, "#{foo | Append value}", "barvalue"),
    (BAR, "#{foo | Append value1 value2}", "barvalue1value2"),
    (
        BAR,
        "#{foo | Append value1 \" \" value2}",
        "barvalue1 value2",
    ),
    (
        BAR,
        "#{foo | Append \" \" #{foo} \" \" value}",
        "bar bar value",
    ),
    (NONE, "#{|Prepend foo}", "foo"),
    (BAR, "#{foo | Prepend}", "#{foo | Prepend}"),
    (BAR, "#{ | Prepend}", "#{ | Prepend}"),
    (BAR, "#{foo | Prepend value}", "valuebar"),
    (BAR, "#{foo | Prepend value1 value2}", "value1value2bar"),
    (
        BAR,
        "#{foo | Prepend value1 \" \" value2}",
        "value1 value2bar",
    ),
    (
        BAR,
        "#{foo | Prepend \" \" #{foo} \" \" value}",
        " bar valuebar",
    ),
    (BAR, "#{foo | Md5 -1}", "#{foo | Md5 -1}"),
    (BAR, "#{foo | Md5 0}", "#{foo | Md5 0}"),
    (BAR, "#{foo | Md5 bar}", "#{foo | Md5 bar}"),
    (BAR, "#{foo | Md5 utf8 0}", "#{foo | Md5 utf8 0}"),
    (BAR, "#{foo | Md5 0 utf8}", "#{foo | Md5 0 utf8}"),
    (BAR, "#{foo | Md5 bar 12}", "#{foo | Md5 bar 12}"),
    (BAR, "#{foo | Md5 12 bar}", "#{foo | Md5 12 bar}"),
    (
        BAR,
        "#{foo | Md5 utf8 12 extra}",
        "#{foo | Md5 utf8 12 extra}",
    ),
    (BAR, "#{foo | Md5 base64}", "#{foo | Md5 base64}"),
    (BAR, "#{ | Md5}", "#{ | Md5}"),
    (
        EMPTY_FOO,
        "#{foo | Md5}",
        "d41d8cd98f00b204e9800998ecf8427e",
    ),
    (FOX, "#{foo | Md5}", "9e107d9d372bb6826bd81d3542a419d6"),
    (FOX_DOT, "#{foo | Md5}", "e4d909c290d0fb1ca068ffaddf22cbd0"),
    (EMPTY_FOO, "#{foo | Md5 4}", "d41d8cd9"),
    (FOX, "#{foo | Md5 3}", "9e107d"),
    (
        FOX_DOT,
        "#{foo | Md5 800}",
        "e4d909c290d0fb1ca068ffaddf22cbd0",
    ),
    (
        EMPTY_FOO,
        "#{foo | Md5 unicode}",
        "d41d8cd98f00b204e9800998ecf8427e",
    ),
    (
        FOX,
        "#{foo | Md5 unicode}",
        "b0986ae6ee1eefee8a4a399090126837",
    ),
    (
        FOX_DOT,
        "#{foo | Md5 utf-8}",
        "e4d909c290d0fb1ca068ffaddf22cbd0",
    ),
    (
        FOX_B64,
        "#{foo | Md5 base64}",
        "9e107d9d372bb6826bd81d3542a419d6",
    ),
    (EMPTY_FOO, "#{foo | Md5 utf-8 5}", "d41d8cd98f"),
    (EMPTY_FOO, "#{foo | Md5 3 unicode}", "d41d8c"),
    (FOX_DOT, "#{foo | Md5 utf8 2}", "e4d9"),
    (BAR, "#{foo | Sha1 bar}", "#{foo | Sha1 bar}"),
    (
        EMPTY_FOO,
        "#{foo | Sha1}",
        "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    ),
    (
        FOX,
        "#{foo | Sha1}",
        "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
    ),
    (
        &[("foo", "The quick brown fox jumps over the lazy cog")],
        "#{foo | Sha1}",
        "de9f2c7fd25e1b3afad3e85a0bd17d9b100db4b3",
    ),
    (
        FOX,
        "#{foo | Sha1 unicode}",
        "bd136cb58899c93173c33a90dde95ead0d0cf6df",
    ),
    (
        FOX_B64,
        "#{foo | Sha1 base64}",
        "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
    ),
    (FOX, "#{foo | Sha1 3}", "2fd4e1"),
    (
        BAR,
        "#{foo | Sha256 12 utf8 extra}",
        "#{foo | Sha256 12 utf8 extra}",
    ),
    (
        EMPTY_FOO,
        "#{foo | Sha256}",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ),
    (
        FOX,
        "#{foo | Sha256}",
        "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592",
    ),
    (
        FOX_DOT,
        "#{foo | Sha256}",
        "ef537f25c895bfa782526529a9b63d97aa631564d5d789c2b765448c8635fb6c",
    ),
    (
        FOX,
        "#{foo | Sha256 unicode}",
        "3b5b0eac46c8f0c16fa1b9c187abc8379cc936f6508892969d49234c6c540e58",
    ),
    (FOX_DOT, "#{foo | Sha256 2 utf8}", "ef53"),
    (
        EMPTY_FOO,
        "#{foo | Sha384}",
        "38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b",
    ),
    (
        FOX,
        "#{foo | Sha384}",
        "ca737f1014a48f4c0b6dd43cb177b0afd9e5169367544c494011e3317dbf9a509cb1e5dc1e85a941bbee3d7f2afbc9b1",
    ),
    (
        FOX,
        "#{foo | Sha384 unicode}",
        "882ab99315b04348e3c7d0bcef46ec8ee7e6b418c5f1180f2dd2b0f86b7d26a6b080d25b180e5e96a7d9912abdd831dd",
    ),
    (FOX_DOT, "#{foo | Sha384 utf8 2}", "ed89"),
    (
        EMPTY_FOO,
        "#{foo | Sha512}",
        "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
    ),
    (
        FOX,
        "#{foo | Sha512}",
        "07e547d9586f6a73f73fbac0435ed76951218fb7d0c8d788a309d785436bbb642e93a252a954f23912547d1e8a3b5ed6e1bfd7097821233fa0538f3db854fee6",
    ),
    (
        FOX_B64,
        "#{foo | Sha512 base64}",
        "07e547d9586f6a73f73fbac0435ed76951218fb7d0c8d788a309d785436bbb642e93a252a954f23912547d1e8a3b5ed6e1bfd7097821233fa0538f3db854fee6",
    ),
    (FOX, "#{foo | Sha512 unicode 4}", "568a3576"),
    // --- Version filters (VersionFixture) ---
    (&[("V", "1")], VERSION_TEMPLATE, "1|0|0|0||||"),
    (&[("V", "1.2")], VERSION_TEMPLATE, "1|2|0|0||||"),
    (&[("V", "1.2.3")], VERSION_TEMPLATE, "1|2|3|0||||"),
    (&[("V", "1.2.3.4")], VERSION_TEMPLATE, "1|2|3|4||||"),
    (
        &[("V", "1.2.3.4-branch.1")],
        VERSION_TEMPLATE,
        "1|2|3|4|branch.1|branch|1|",
    ),
    (
        &[("V", "1.2.3.4-branch.1+meta")],
        VERSION_TEMPLATE,
        "1|2|3|4|branch.1|branch|1|meta",
    ),
    (
        &[("V", "v1.2.3.4-branch.1+meta")],
        VERSION_TEMPLATE,
        "1|2|3|4|branch.1|branch|1|meta",
    ),
    (
        &[("V", "V1.2.3.4-branch.1+meta")],
        VERSION_TEMPLATE,
        "1|2|3|4|branch.1|branch|1|meta",
    ),
    (
        &[("V", "V1.2.3.4-branch.hithere+meta")],
        VERSION_TEMPLATE,
        "1|2|3|4|branch.hithere|branch|hithere|meta",
    ),
    (
        &[("V", "V1.2.3.4-branch-hithere+meta")],
        VERSION_TEMPLATE,
        "1|2|3|4|branch-hithere|branch|hithere|meta",
    ),
    (
        &[("V", "V1.2.3.4-branch_hithere+meta")],
        VERSION_TEMPLATE,
        "1|2|3|4|branch_hithere|branch|hithere|meta",
    ),
    (
        &[("V", "19.0.0.Final")],
        VERSION_TEMPLATE,
        "19|0|0|0|Final|Final||",
    ),
    (
        &[("V", "284.0.0-debian_component_based")],
        VERSION_TEMPLATE,
        "284|0|0|0|debian_component_based|debian|component_based|",
    ),
    (
        &[("V", "latest")],
        VERSION_TEMPLATE,
        "0|0|0|0|latest|latest||",
    ),
    (&[("V", "v1")], VERSION_TEMPLATE, "1|0|0|0||||"),
    (&[("V", "v1.2.3")], VERSION_TEMPLATE, "1|2|3|0||||"),
    // Docs' extraction table; the docs say prefix `my-branch` / counter `1.2`, but Octopus's
    // parser (and the fixture cases above) split the prerelease at its first separator.
    (
        &[("V", "1.2.3.4-my-branch.1.2+build10")],
        VERSION_TEMPLATE,
        "1|2|3|4|my-branch.1.2|my|branch.1.2|build10",
    ),
    // --- Conditionals (ConditionalsFixture) ---
    (TRUTHY, "#{if Truthy}#{Result}#{/if}", "result"),
    (TRUTHY, "#{ if Truthy}#{Result}#{/if}", "result"),
    (TRUTHY, "#{  if Truthy}#{Result}#{/if}", "result"),
    (TRUTHY, "#{if Truthy }#{Result}#{/if}", "result"),
    (TRUTHY, "#{ if Truthy  }#{Result}#{/if}", "result"),
    (TRUTHY, "#{if  Truthy}#{Result}#{/if}", "result"),
    (TRUTHY, "#{if Truthy}#{ Result}#{/if}", "result"),
    (TRUTHY, "#{if Truthy}#{  Result}#{/if}", "result"),
    (TRUTHY, "#{if Truthy}#{Result }#{/if}", "result"),
    (TRUTHY, "#{if Truthy}#{Result  }#{/if}", "result"),
    (TRUTHY, "#{if Truthy  == \"true\"}#{Result}#{/if}", "result"),
    (
        TRUTHY,
        "#{if Truthy  != \"false\"}#{Result}#{/if}",
        "result",
    ),
    (FALSY, "#{unless Truthy}#{Result}#{/unless}", "result"),
    (
        &[
            ("Result", "result"),
            ("Octopus", "octopus"),
            ("Compare", "octopus"),
        ],
        "#{if Octopus == Compare}#{Result}#{/if}",
        "result",
    ),
    (
        &[("Result", "result"), ("Octopus", "octopus")],
        "#{if Octopus == \"octopus\"}#{Result}#{/if}",
        "result",
    ),
    (
        &[("Result", "result"), ("software", "something else")],
        "#{if Octopus != \"software\"}#{Result}#{/if}",
        "result",
    ),
    (
        TRUTHY,
        "#{if Truthy}#{if Fooey==\"foo\"}#{Result}#{/if}#{/if}",
        "result",
    ),
    (
        TRUTHY,
        "#{if Truthy}#{Result}#{else}#{ElseResult}#{/if}",
        "result",
    ),
    (
        FALSY,
        "#{if Truthy}#{Result}#{else}#{ElseResult}#{/if}",
        "elseresult",
    ),
    (
        FALSY,
        "#{if Truthy}#{Result}#{else}#{if Fooey==\"foo\"}#{ElseResult}#{/if}#{/if}",
        "elseresult",
    ),
    (FALSY, "#{unless Truthy}yes#{else}no#{/unless}", "yes"),
    (TRUTHY, "#{unless Truthy}yes#{else}no#{/unless}", "no"),
    (
        &[("E", "Test")],
        "#{if E == \"Dev\"}dev#{elseif E == \"Test\"}test#{else}other#{/if}",
        "test",
    ),
    (
        &[("E", "Prod")],
        "#{if E == \"Dev\"}dev#{elseif E == \"Test\"}test#{else}other#{/if}",
        "other",
    ),
    (
        &[("E", "Dev")],
        "#{if E == \"Dev\"}dev#{elseif E == \"Test\"}test#{/if}",
        "dev",
    ),
    (
        &[("Octopus.Environment.Name", "Production")],
        "#{if Octopus.Environment.Name | StartsWith \"Prod\"}live#{/if}",
        "live",
    ),
    (
        &[("Octopus.Environment.Name", "Test")],
        "#{if Octopus.Environment.Name | StartsWith \"Prod\"}live#{else}safe#{/if}",
        "safe",
    ),
    (
        &[("A", " Prod "), ("B", "prod")],
        "#{if A | Trim | ToLower == B}same#{/if}",
        "same",
    ),
    (
        &[("V", "1.2.3-my-branch.4")],
        "#{if V | VersionPreReleasePrefix == \"my\"}mine#{/if}",
        "mine",
    ),
    (NONE, "[#{if Undefined}x#{/if}]", "[]"),
    (&[("X", "")], "[#{if X}x#{/if}]", "[]"),
    (&[("X", " FALSE ")], "[#{if X}x#{/if}]", "[]"),
    (&[("X", "no")], "[#{if X}x#{/if}]", "[]"),
    (&[("X", " 0")], "[#{if X}x#{/if}]", "[]"),
    (&[("X", "00")], "[#{if X}x#{/if}]", "[x]"),
    (&[("X", "anything")], "[#{if X}x#{/if}]", "[x]"),
    (&[("X", "Yes")], "[#{IF X}x#{/IF}]", "[x]"),
    (NONE, "#{if Missing == \"\"}empty#{/if}", "empty"),
    (
        &[("A", "x"), ("B", "X")],
        "#{if A == B}same#{else}differ#{/if}",
        "differ",
    ),
    (
        &[("Foo", "test text")],
        "{\"Bar\":\"#{if Foo == \\\"test text\\\"}Blaa#{/if}\"}",
        "{\"Bar\":\"Blaa\"}",
    ),
    (TRUTHY, "#{else}", "#{else}"),
    (TRUTHY, "#{if Truthy}no end", "#{if Truthy}no end"),
    // --- Iteration (IterationFixture) ---
    (
        ACTIONS,
        "#{each a in Octopus.Action}#{a}-#{a.Name}#{/each}",
        "Package A-APackage B-B-Blank",
    ),
    (
        ACTIONS,
        "#{ each a in Octopus.Action}#{a}-#{a.Name}#{/each}",
        "Package A-APackage B-B-Blank",
    ),
    (
        ACTIONS,
        "#{  each a in Octopus.Action}#{a}-#{a.Name}#{/each}",
        "Package A-APackage B-B-Blank",
    ),
    (
        ACTIONS,
        "#{each  a in Octopus.Action}#{a}-#{a.Name}#{/each}",
        "Package A-APackage B-B-Blank",
    ),
    (
        ACTIONS,
        "#{each a  in Octopus.Action}#{a}-#{a.Name}#{/each}",
        "Package A-APackage B-B-Blank",
    ),
    (
        ACTIONS,
        "#{each a in  Octopus.Action}#{a}-#{a.Name}#{/each}",
        "Package A-APackage B-B-Blank",
    ),
    (
        ACTIONS,
        "#{each a in Octopus.Action }#{a}-#{a.Name}#{/each}",
        "Package A-APackage B-B-Blank",
    ),
    (
        ACTIONS,
        "#{each a in Octopus.Action  }#{a}-#{a.Name}#{/each}",
        "Package A-APackage B-B-Blank",
    ),
    (
        ACTIONS,
        "#{each a in Octopus.Action}#{ a}-#{a.Name}#{/each}",
        "Package A-APackage B-B-Blank",
    ),
    (
        ACTIONS,
        "#{each a in Octopus.Action}#{  a}-#{a.Name}#{/each}",
        "Package A-APackage B-B-Blank",
    ),
    (
        ACTIONS,
        "#{each a in Octopus.Action}#{a }-#{a.Name}#{/each}",
        "Package A-APackage B-B-Blank",
    ),
    (
        ACTIONS,
        "#{each a in Octopus.Action}#{a  }-#{a.Name}#{/each}",
        "Package A-APackage B-B-Blank",
    ),
    (
        &[
            ("Octopus.Action[Package A].Name", "A"),
            ("Octopus.Action[Package A].TargetRoles", "a,b"),
            ("Octopus.Action[Package B].Name", "B"),
            ("Octopus.Action[Package B].TargetRoles", "c"),
            ("Octopus.Action[].Name", "Z"),
            ("Octopus.Action[].TargetRoles", "y"),
        ],
        "#{each a in Octopus.Action}#{each tr in a.TargetRoles}#{a.Name}#{tr}#{/each}#{/each}",
        "AaAbBcZy",
    ),
    (
        &[
            ("PackageA_Name", "A"),
            ("PackageB_Name", "B"),
            ("PackageC_Name", "C"),
            ("Octopus.Action[Package A].Name", "#{PackageA_Name}"),
            ("Octopus.Action[Package B].Name", "#{PackageB_Name}"),
            ("Octopus.Action[].Name", "#{PackageC_Name}"),
        ],
        "#{each a in Octopus.Action}#{a.Name}#{/each}",
        "ABC",
    ),
    (
        &[("Numbers", "A,B,C")],
        "#{each a in Numbers}#{a} First:#{Octopus.Template.Each.First} Last:#{Octopus.Template.Each.Last} Index:#{Octopus.Template.Each.Index}, #{/each}",
        "A First:True Last:False Index:0, B First:False Last:False Index:1, C First:False Last:True Index:2, ",
    ),
    (
        &[
            ("Octopus.Action.Package[container[0]].Name", "A"),
            ("Octopus.Action.Package[container[1]].Name", "B"),
            ("Octopus.Action.Package[container[2]].Name", "C"),
        ],
        "#{each a in Octopus.Action.Package}#{a}: #{a.Name} #{/each}",
        "container[0]: A container[1]: B container[2]: C ",
    ),
    (KEYED, "#{each x in Simple}[#{x.Key}]#{/each}", "[a][b]"),
    (KEYED, "#{each x in NoDirect}[#{x.Key}]#{/each}", "[a][b]"),
    (
        KEYED,
        "#{each x in Cert}[#{x.Key}=#{x.Thumbprint}]#{/each}",
        "[a=AAA][b=BBB]",
    ),
    (KEYED, "#{each x in Simple}[#{x}]#{/each}", "[5][7]"),
    (KEYED, "#{each x in NoDirect}[#{x}]#{/each}", "[a][b]"),
    (
        KEYED,
        "#{each x in Cert}[#{x}]#{/each}",
        "[Certificate-1][Certificate-2]",
    ),
    (
        &[("Coll[a]", "val-a"), ("Coll[a].Key", "user-supplied")],
        "#{each x in Coll}[#{x.Key}]#{/each} #{Coll[a].Key}",
        "[user-supplied] user-supplied",
    ),
    (
        &[("Coll[a].Key", "user-supplied"), ("Coll[a].Name", "Alpha")],
        "#{each x in Coll}[#{x.Key}]#{/each}",
        "[user-supplied]",
    ),
    (
        &[("Json", "{\"a\": \"AAA\", \"b\": \"BBB\"}")],
        "#{each x in Json}[#{x.Key}=#{x.Value}]#{/each}",
        "[a=AAA][b=BBB]",
    ),
    (
        &[("L", "a,b")],
        "#{each x in L}#{each y in L}#{x}#{y}#{Octopus.Template.Each.Index} #{/each}#{/each}",
        "aa0 ab1 ba0 bb1 ",
    ),
    (&[("L", "a, b")], "#{each x in L}[#{x}]#{/each}", "[a][ b]"),
    (&[("L", "")], "[#{each x in L}#{x}#{/each}]", "[]"),
    (
        &[("X[b].N", "2"), ("x[A].N", "1"), ("X[B].M", "3")],
        "#{each i in X}#{i}#{/each}",
        "bA",
    ),
    (
        &[("x", "outer"), ("L", "inner")],
        "#{each x in L}#{x}#{/each} #{x}",
        "inner outer",
    ),
    (
        &[("L", "1,2,3")],
        "#{each i in L}#{i}#{unless Octopus.Template.Each.Last}, #{/unless}#{/each}",
        "1, 2, 3",
    ),
    // --- JSON (JsonFixture) ---
    (JSON_OVERRIDE, "#{Test.Hello}", "Go Away"),
    (JSON_OVERRIDE, "#{Test[Foo]}", "Nope"),
    (JSON_OVERRIDE, "#{Test.Donkey.Kong}", "MARIO"),
    (JSON_TEMPLATED, "#{Test[Foo]}", "Bar"),
    (JSON_TEMPLATED, "#{Test.Foo}", "Bar"),
    (JSON_TEMPLATED, "#{Test[#{Prop}]}", "Bar"),
    (
        &[("Test", "{\"Hello\": \"World\"}")],
        "#{Test[Hello]}",
        "World",
    ),
    (
        &[("Test", "{\"Hello\": \"World\"}")],
        "#{Test.Hello}",
        "World",
    ),
    (
        &[(
            "Test",
            "{\"Hello\": {\"World\": {\"Foo\": {\"Bar\": 12 }}}}",
        )],
        "#{Test[Hello][World][Foo][Bar]}",
        "12",
    ),
    (
        &[(
            "Test",
            "{\"Items\": [{\"Name\": \"Toast\"}, {\"Name\": \"Bread\"}]}",
        )],
        "#{Test.Items[1].Name}",
        "Bread",
    ),
    (
        &[(
            "Test",
            "{\"Items\": [{\"Name\": \"Toast\"}, {\"Name\": \"Bread\"}]}",
        )],
        "#{Test.Items[0].Name}",
        "Toast",
    ),
    (
        &[("Test", "{\"Foo\": {\"Bar\":\"11\"}}")],
        "#{Test.Foo}",
        "{\"Bar\":\"11\"}",
    ),
    (
        &[(
            "Test",
            "{Name: \"#{Test.Value}\", Desc: \"Monkey\", Value: 12}",
        )],
        "#{Test.Name}",
        "12",
    ),
    (
        &[("Test", "{Name: NoComma}")],
        "#{Test.Name}",
        "#{Test.Name}",
    ),
    (
        &[("Test", "[2,3,5,8]")],
        "#{each number in Test}#{number}#{if Octopus.Template.Each.Last == \"False\"}-#{/if}#{/each}",
        "2-3-5-8",
    ),
    (
        &[("Test", "{Blah: null}")],
        "Before:#{each number in Test.Blah}#{number}#{/each}:After",
        "Before::After",
    ),
    (&[("Test", "[2,3,5,8]")], "Alpha#{Test[4]}bet", "Alphabet"),
    (
        &[("Octopus.Sizes", "{\"Small\": \"11.5\",  Large: 15.21}")],
        "#{each size in Octopus.Sizes}#{size}:#{size.Value},#{/each}",
        "Small:11.5,Large:15.21,",
    ),
    (
        &[(
            "Octopus.Sizes",
            "{\"X-Large\": {\"Error\": \"Not Stocked\"}}",
        )],
        "#{each size in Octopus.Sizes}#{size.Key} - #{size.Value.Error}#{/each}",
        "X-Large - Not Stocked",
    ),
    (&[("Foo", "{Bar: null}")], "Alpha#{Foo.Bar}bet", "Alphabet"),
    (
        &[("Foo", "{Bar: \"ABC\"}")],
        "Alpha#{Foo.NotBar}bet",
        "Alphabet",
    ),
    (
        &[("Foo", "{Bar: \"ABC\"}")],
        "#{Foo.NotBar.Deeper}",
        "#{Foo.NotBar.Deeper}",
    ),
    (
        &[("Foo", "{Flag: true, N: 1.50, Big: 12345678901234567890}")],
        "#{Foo.Flag} #{Foo.N} #{Foo.Big}",
        "True 1.5 12345678901234567890",
    ),
    (
        &[("Foo", "[[1,2],[3]]")],
        "#{each row in Foo}(#{each c in row}#{c}#{/each})#{/each}",
        "(12)(3)",
    ),
    (
        &[("Foo", "[{N: 'a'}, {N: 'b'}]")],
        "#{each o in Foo}#{o.N}#{/each}",
        "ab",
    ),
    (&[("Foo", "{a: 1}")], "#{Foo.a.b}", "#{Foo.a.b}"),
    (&[("Foo", "[1,2]")], "#{Foo[x]}", "#{Foo[x]}"),
    // --- Calculations (CalculationFixture); an echoed calc keeps its `calc` keyword ---
    (CALC, "#{calc 3+2}", "5"),
    (CALC, "#{calc 3-2}", "1"),
    (CALC, "#{calc 3*2}", "6"),
    (CALC, "#{calc 3/2}", "1.5"),
    (CALC, "#{calc 3*2+2*4}", "14"),
    (CALC, "#{calc 3*(2+2)*4}", "48"),
    (CALC, "#{calc A+2}", "7"),
    (CALC, "#{calc A+B}", "12"),
    (CALC, "#{calc C+2}", "#{calc C+2}"),
    (CALC, "#{calc {B}-2}", "5"),
    (CALC, "#{calc 2-B}", "-5"),
    (CALC, "#{calc 2-4}", "-2"),
    (CALC, "#{calc (B*2)-2}", "12"),
    (CALC, "#{calc 2-(B*2)}", "-12"),
    (CALC, "#{calc {B}/2}", "3.5"),
    (CALC, "#{calc 2/B}", "0.2857142857142857"),
    (CALC, "#{calc 2/{B}}", "0.2857142857142857"),
    (CALC, "#{calc 2/4}", "0.5"),
    (CALC, "#{calc 0.2*B}", "1.4000000000000001"),
    (CALC, "#{calc B*0.2}", "1.4000000000000001"),
    (CALC, "#{calc {B}*0.2}", "1.4000000000000001"),
    (CALC, "#{calc {Another-Var}-2}", "9"),
    (CALC, "#{calc {The/Var}-2}", "7"),
    (CALC, "#{calc 7%2}", "1"),
    (CALC, "#{calc 7%7}", "0"),
    (CALC, "#{calc 2%7}", "2"),
    (CALC, "#{calc A%B}", "5"),
    (CALC, "#{calc B%A}", "2"),
    (CALC, "#{calc {B}%2}", "1"),
    (CALC, "#{calc B%2}", "1"),
    (CALC, "#{calc {The/Var}%4}", "1"),
    (CALC, "#{calc 2+7%4}", "5"),
    (CALC, "#{calc 7%4+2}", "5"),
    (CALC, "#{calc 2-9%4}", "1"),
    (CALC, "#{calc 10%4*2}", "4"),
    (CALC, "#{calc 10*4%3}", "1"),
    (CALC, "#{calc (B+3)%4}", "2"),
    (CALC, "#{calc 20%(B+1)}", "4"),
    (CALC, "#{calc 5.5%2}", "#{calc 5.5%2}"),
    (CALC, "#{calc 5%2.5}", "#{calc 5%2.5}"),
    (CALC, "#{calc 7%0}", "#{calc 7%0}"),
    (CALC, "#{calc C%2}", "#{calc C%2}"),
    (CALC, "#{calc B-2}", "#{calc B-2}"),
    (CALC, "#{calc B/2}", "#{calc B/2}"),
    (CALC, "#{calc 1/0}", "#{calc 1/0}"),
    (CALC, "#{calc -A + 1}", "-4"),
    (&[("N", "abc")], "#{calc N + 1}", "#{calc N + 1}"),
    // --- Documentation: Variable substitutions ---
    (
        NONE,
        "Server=#{Server}; Database=#{Database}",
        "Server=#{Server}; Database=#{Database}",
    ),
    (
        &[
            ("Server", "SQL"),
            ("Database", "PDB001"),
            ("ConnectionString", "Server=#{Server}; Database=#{Database}"),
        ],
        "#{ConnectionString}",
        "Server=SQL; Database=PDB001",
    ),
    (NONE, "##{NotToBeReplaced}", "#{NotToBeReplaced}"),
    (
        &[
            ("MyPassword[Rob]", "passwordX"),
            ("MyPassword[Steve]", "passwordY"),
            ("MyPassword[Mary]", "passwordZ"),
            ("UserName", "Mary"),
        ],
        "#{MyPassword[#{UserName}]}",
        "passwordZ",
    ),
    (
        NONE,
        "#{MyPassword[#{UserName}]}",
        "#{MyPassword[#{UserName}]}",
    ),
    (
        &[("IPOffset[Primary]", "0"), ("IPOffset[Secondary]", "180")],
        "192.168.0.#{calc IPOffset[Primary] + 1}",
        "192.168.0.1",
    ),
    (
        &[("IPOffset[Primary]", "0"), ("IPOffset[Secondary]", "180")],
        "192.168.0.#{calc IPOffset[Secondary] + 1}",
        "192.168.0.181",
    ),
    (&[("ScaleFactor", "12")], "#{calc 22 * ScaleFactor}", "264"),
    (
        &[("Numbers", "10,20,30,40,50")],
        "#{each i in Numbers}#{calc i + 5} #{/each}",
        "15 25 35 45 55 ",
    ),
    (
        &[("DebugEnabled", "True")],
        "<compilation #{if DebugEnabled}debug=\"true\"#{/if}>",
        "<compilation debug=\"true\">",
    ),
    (
        &[("DebugEnabled", "False")],
        "<compilation #{if DebugEnabled}debug=\"true\"#{/if}>",
        "<compilation >",
    ),
    (
        NONE,
        "<compilation #{unless DebugDisabled}debug=\"true\"#{/unless}>",
        "<compilation debug=\"true\">",
    ),
    (
        &[("Octopus.Environment.Name", "Production")],
        "#{if Octopus.Environment.Name == \"Production\"}prod#{/if}",
        "prod",
    ),
    (
        &[("Octopus.Environment.Name", "Test")],
        "#{if Octopus.Environment.Name != \"Production\"}not prod#{/if}",
        "not prod",
    ),
    (
        &[("ATruthyVariable", "yes")],
        "#{if ATruthyVariable}\n  true\n#{else}\n  false\n#{/if}",
        "\n  true\n",
    ),
    (
        &[("Octopus.Environment.Name", "Test")],
        "#{if Octopus.Environment.Name == \"Development\"}\n  Development\n#{else}\n  #{if Octopus.Environment.Name == \"Test\"}\n    Test\n  #{else}\n    Neither\n  #{/if}\n#{/if}",
        "\n  \n    Test\n  \n",
    ),
    (
        &[
            ("Base.MaxLogLevel", "ERROR"),
            ("Environment.LogLevel", "DEBUG"),
        ],
        "#{if Environment.LogLevel == Base.MaxLogLevel}We are at the MAX!#{else}We have room to grow!#{/if}",
        "We have room to grow!",
    ),
    (
        &[
            ("Base.MaxLogLevel", "ERROR"),
            ("Environment.LogLevel", "ERROR"),
        ],
        "#{if Environment.LogLevel == Base.MaxLogLevel}We are at the MAX!#{else}We have room to grow!#{/if}",
        "We are at the MAX!",
    ),
    (
        &[("Octopus.Environment.Name", "Production")],
        "#{if Octopus.Environment.Name == \"Production\"}true#{/if}",
        "true",
    ),
    (
        &[("Octopus.Environment.Name", "Staging")],
        "#{if Octopus.Environment.Name != \"Production\"}true#{/if}",
        "true",
    ),
    (
        &[("Octopus.Action[StepName].Output.HasRun", "True")],
        "#{unless Octopus.Action[StepName].Output.HasRun == \"True\"}true#{/unless}",
        "",
    ),
    (
        ENDPOINTS,
        "Listening on:\n#{each endpoint in Endpoint}\n - Endpoint #{endpoint} at #{endpoint.Address} is #{endpoint.Description}\n#{/each}",
        "Listening on:\n\n - Endpoint A at http://a.example.com is Primary\n\n - Endpoint B at http://b.example.com is Replica\n",
    ),
    (
        WIDGETS,
        "#{each w in MyWidgets}\n'#{w.Value.WidgetId}': #{if w.Value.WidgetId == WidgetIdSelector}This is my Widget!#{else}No widget matched :(#{/if}\n#{/each}",
        "\n'Widget-1': No widget matched :(\n\n'Widget-2': This is my Widget!\n",
    ),
    (
        &[("Endpoints", "http://a.example.com,http://b.example.com")],
        "Listening on:#{each endpoint in Endpoints}\n - #{endpoint}#{/each}",
        "Listening on:\n - http://a.example.com\n - http://b.example.com",
    ),
    (
        &[("Endpoints", "SV1,SV2,SV3")],
        "#{each endpoint in Endpoints}#{if Octopus.Template.Each.First}first #{endpoint} #{/if}#{if Octopus.Template.Each.Last}last #{endpoint}#{/if}#{/each}",
        "first SV1 last SV3",
    ),
    (
        &[("Octopus.Environment.Name", "Production")],
        "#{Octopus.Environment.Name | ToLower}",
        "production",
    ),
    // --- Documentation: Variable filters ---
    (
        &[("ProjectName", "You & I")],
        "<h3>#{ProjectName | HtmlEscape}</h3>",
        "<h3>You &amp; I</h3>",
    ),
    (&[("MyVar", "4.3")], "#{MyVar | Format C}", "$4.30"),
    (
        &[("MyVar", "2030/05/22 09:05:00")],
        "#{MyVar | Format yyyy}",
        "2030",
    ),
    (
        &[
            ("Octopus.Deployment.Created", "2020-01-01T11:09:38+01:00"),
            ("MyVar", "#{Octopus.Deployment.Created}"),
        ],
        "#{MyVar | Format \"MM/dd/yyyy\"}",
        "01/01/2020",
    ),
    (
        &[
            ("Octopus.Deployment.Created", "2020-01-01T11:09:38+01:00"),
            ("MyVar", "#{Octopus.Deployment.Created}"),
        ],
        "#{MyVar | Format \"hh:mm:ss tt zz\"}",
        "11:09:38 AM +01",
    ),
    (
        &[("MyVar", "1;2;3")],
        "#{MyVar | Replace \";\" \", \"}",
        "1, 2, 3",
    ),
    (
        &[("MyVar", "Automated Deployment")],
        "#{MyVar | ToLower}",
        "automated deployment",
    ),
    (
        &[("MyVar", "Automated Deployment")],
        "#{MyVar | ToUpper}",
        "AUTOMATED DEPLOYMENT",
    ),
    (MYVAR_ABC, "#{MyVar | Replace b}", "ac"),
    (MYVAR_ABC, "#{MyVar | Replace b X}", "aXc"),
    (&[("MyVar", "a b c")], "#{MyVar | Replace \"a b\" X}", "X c"),
    (
        &[("MyVar", "ab12c3")],
        "#{MyVar | Replace \"[0-9]+\" X}",
        "abXcX",
    ),
    (
        MYVAR_ABC,
        "#{MyVar | Replace \"(.)b(.)\" \"$2X$1\" }",
        "cXa",
    ),
    (MYVAR_ABC, "#{MyVar | Replace #{match} #{replace}}", "a_c"),
    (MYVAR_ABC, "#{MyVar | Replace #{match} _}", "a_c"),
    // The docs print `a\\b` here, but a .NET replacement string has no backslash escapes.
    (
        &[("MyVar", "a\\b")],
        "#{MyVar | Replace \"\\\\\" \"\\\\\\\\\"}",
        "a\\\\\\\\b",
    ),
    (
        &[("MyVar", "Octopus Deploy")],
        "#{MyVar | Substring 2 3}",
        "top",
    ),
    (&[("MyVar", "   Bar   ")], "[#{MyVar | Trim}]", "[Bar]"),
    (
        &[("MyVar", "   Bar   ")],
        "[#{MyVar | Trim start}]",
        "[Bar   ]",
    ),
    (
        &[("MyVar", "   Bar   ")],
        "[#{MyVar | Trim end}]",
        "[   Bar]",
    ),
    (MYVAR_ABC, "#{MyVar | Truncate 7}", "abc"),
    (MYVAR_ABC, "#{MyVar | Match abc}", "true"),
    (MYVAR_ABC, "#{MyVar | Match def}", "false"),
    (&[("MyVar", "a b c")], "#{MyVar | Match \"a b\"}", "true"),
    (
        &[("MyVar", "ab12c3")],
        "#{MyVar | Match \"ab[0-9]+\"}",
        "true",
    ),
    (MYVAR_ABC, "#{MyVar | Match #{pattern}}", "true"),
    (
        &[("MyVar", "Octopus Deploy")],
        "#{MyVar | Match \"Octo.*Deploy\"}",
        "true",
    ),
    (MYVAR_ABC, "#{MyVar | StartsWith ab}", "true"),
    (MYVAR_ABC, "#{MyVar | StartsWith Ab}", "false"),
    (MYVAR_ABC, "#{MyVar | EndsWith bc}", "true"),
    (MYVAR_ABC, "#{MyVar | EndsWith bC}", "false"),
    (MYVAR_ABC, "#{MyVar | Contains AbC}", "false"),
    (&[("MyVar", "a b(c")], "#{MyVar | Contains \" b(\"}", "true"),
    (
        &[("MyVar", "a\"b\"c"), ("str", "\"b\"")],
        "#{MyVar | Contains #{str}}",
        "true",
    ),
    // The docs pair `QmF6` with `Bar`, but `QmF6` is "Baz" (and "Bar" is `QmFy`).
    (&[("MyVar", "QmF6")], "#{MyVar | FromBase64}", "Baz"),
    (&[("MyVar", "Bar")], "#{MyVar | ToBase64}", "QmFy"),
    (NONE, "#{ | NowDate \"HH dd-MMM-yyyy\"}", "08 03-Nov-2016"),
    (NONE, "#{ | NowDateUtc zz}", "+00"),
    (
        &[("MyFormat", "dd-MM-yyyy")],
        "#{ | NowDate #{MyFormat}}",
        "03-11-2016",
    ),
    (&[("MyVar", "1 < 2")], "#{MyVar | HtmlEscape}", "1 &lt; 2"),
    (&[("MyVar", "1 < 2")], "#{MyVar | XmlEscape}", "1 &lt; 2"),
    (
        &[("MyVar", "He said \"Hello!\"")],
        "#{MyVar | JsonEscape}",
        "He said \\\"Hello!\\\"",
    ),
    (
        &[("MyVar", "Hey: x=y")],
        "#{MyVar | PropertiesKeyEscape}",
        "Hey\\:\\ x\\=y",
    ),
    (
        &[("MyVar", "a\\b=c")],
        "#{MyVar | PropertiesValueEscape}",
        "a\\\\b=c",
    ),
    (
        &[("MyVar", "\"Hello\"\\Goodbye")],
        "#{MyVar | YamlDoubleQuoteEscape}",
        "\\\"Hello\\\"\\\\Goodbye",
    ),
    (
        &[("MyVar", "The bee's knees")],
        "#{MyVar | YamlSingleQuoteEscape}",
        "The bee''s knees",
    ),
    (
        NONE,
        "Server=#{if DatabaseServer}#{DatabaseServer}#{/if};",
        "Server=;",
    ),
    (
        &[("DatabaseServer", "SQL")],
        "Server=#{if DatabaseServer}#{DatabaseServer}#{/if};",
        "Server=SQL;",
    ),
    (
        SHIRT,
        "<h1>#{Custom.MyJson[Name]}</h1>\n#{Custom.MyJson.Name} - #{Custom.MyJson.Description}\nFrom: #{Custom.MyJson.Sizes[0].price | Format C}\nSizes: #{Custom.MyJson.Sizes}",
        "<h1>t-shirt</h1>\nt-shirt - Shirts are not shorts.\nFrom: $15.00\nSizes: [{\"size\":\"small\",\"price\":15.0},{\"size\":\"large\",\"price\":20.0}]",
    ),
    (
        PETS,
        "Numbers:\n#{each number in MyNumbers}\n - #{number}\n#{/each}\n\nObjects:\n#{each item in MyObjects}\n\t#{item.Key}: #{item.Value.Price}\n#{/each}",
        "Numbers:\n\n - 5\n\n - 2\n\n - 4\n\n\nObjects:\n\n\tCat: 11.5\n\n\tDog: 17.5\n",
    ),
    // --- Ferry: more formats, dates, escapes and edge cases ---
    (&[("N", "1234567.891")], "#{N | Format N2}", "1,234,567.89"),
    (&[("N", "2.675")], "#{N | Format F2}", "2.68"),
    (&[("N", "0.256")], "#{N | Format P1}", "25.6%"),
    (&[("N", "1234.5")], "#{N | Format \"#,##0.00\"}", "1,234.50"),
    (&[("N", "5")], "#{N | Format 0000}", "0005"),
    (&[("N", "42")], "#{N | Format Int32 D5}", "00042"),
    (&[("N", "255")], "#{N | Format Int X}", "FF"),
    (
        &[("N", "4.5")],
        "#{N | Format Int D}",
        "#{N | Format Int D}",
    ),
    (&[("N", "42")], "#{N | Format D}", "#{N | Format D}"),
    (&[("N", "4.30")], "#{N | Format G}", "4.30"),
    (
        &[("N", "1234.5678")],
        "#{N | Format Double E2}",
        "1.23E+003",
    ),
    (
        &[("D", "2030-05-22T21:05:03+02:00")],
        "#{D | Format u}",
        "2030-05-22 19:05:03Z",
    ),
    (
        &[("D", "2030-05-22T21:05:03+02:00")],
        "#{D | Format Date \"HH:mm zzz\"}",
        "05:05 +10:00",
    ),
    (
        &[("D", "2030-05-22")],
        "#{D | Format D}",
        "Wednesday, May 22, 2030",
    ),
    (
        &[("D", "2030-05-22")],
        "#{D | Format \"ddd d MMM\"}",
        "Wed 22 May",
    ),
    (
        &[("D", "2030-05-22T10:00:00")],
        "#{D | AddDays 1}",
        "2030-05-23T10:00:00.0000000",
    ),
    (
        &[("D", "2030-05-22T10:00:00+02:00")],
        "#{D | AddHours -12.5}",
        "2030-05-21T21:30:00.0000000+02:00",
    ),
    (
        &[("D", "2030-01-31")],
        "#{D | AddMonths 1 | Format yyyy-MM-dd}",
        "2030-02-28",
    ),
    (
        NONE,
        "#{ | NowDate | AddDays 1 | Format \"yyyy-MM-dd\"}",
        "2016-11-04",
    ),
    (
        &[("D", "not a date")],
        "#{D | AddDays 1}",
        "#{D | AddDays 1}",
    ),
    (&[("X", "abc")], "#{X | Null}", "#{X | Null}"),
    (&[("X", "a\u{e9}b")], "#{X | ToBase64 unicode}", "YQDpAGIA"),
    (
        &[("X", "YQDpAGIA")],
        "#{X | FromBase64 unicode}",
        "a\u{e9}b",
    ),
    (
        &[("X", "not base64!")],
        "#{X | FromBase64}",
        "#{X | FromBase64}",
    ),
    (
        &[("X", "x")],
        "#{X | Replace \"(?<=a)b\" c}",
        "#{X | Replace \"(?<=a)b\" c}",
    ),
    (
        &[("X", "a-b")],
        "#{X | Replace \"(?<l>\\w)-(?<r>\\w)\" \"${r}-${l} $$ $& $0\"}",
        "b-a $ a-b a-b",
    ),
    (
        &[("X", "Octopus Deploy")],
        "#{X | Truncate 3 \"~\"}",
        "Oct~",
    ),
    (
        &[("X", "héllo wörld")],
        "#{X | ToUpper | Substring 1 4}",
        "ÉLLO",
    ),
    (&[("X", "a#{b")], "#{X}", "a#{b"),
    (&[("X", "##{NotMe}")], "#{X}", "#{NotMe}"),
    (&[("A", "#{B}"), ("B", "#{C}"), ("C", "end")], "#{A}", "end"),
    (
        &[("A", "[#{B | ToUpper}]"), ("B", "x")],
        "#{A | Append !}",
        "[X]!",
    ),
    // `#{#{` is no construct: the first `#{` stays text, the rest is evaluated.
    (&[("Name", "x"), ("x", "indirect")], "#{#{Name}}", "#{x}"),
    (
        &[("L", "a,b"), ("Item", "#{x}!")],
        "#{each x in L}#{Item}#{/each}",
        "a!b!",
    ),
    (
        &[("A", " x "), ("B", "x ")],
        "#{if A | Trim == B | Trim}same#{/if}",
        "same",
    ),
    (&[("X", "yes")], "#{ IF X }x#{ ELSE }y#{ /if }", "x"),
    (&[("N", "3.14159")], "#{N | Format 0.00}", "3.14"),
    (
        &[("X", "Octopus Deploy")],
        "#{X | Truncate 7 \"…\"}",
        "Octopus…",
    ),
    (
        &[(
            "J",
            "{\"Name\": \"exact\", \"name\": \"lower\", \"Other\": 1}",
        )],
        "#{J.name} #{J.NAME} #{J.other}",
        "lower exact 1",
    ),
    (
        &[("V", "not a version!")],
        "#{V | VersionMajor}",
        "#{V | VersionMajor}",
    ),
    (
        &[("L", "b,a")],
        "#{each x in L}#{x | ToUpper}#{/each}",
        "BA",
    ),
    (&[("Foo", "Bar")], "a}b{c#d", "a}b{c#d"),
    (&[("Foo", "Bar")], "#{/if}#{/each}", "#{/if}#{/each}"),
    (&[("Foo", "Bar")], "#{Foo}#", "Bar#"),
    (
        &[("Foo", "Bar")],
        "\u{1F600}#\u{1F600}##{Foo}",
        "\u{1F600}#\u{1F600}#{Foo}",
    ),
];

#[test]
fn table_of_cases() {
    let options = super::options();
    let mut failures = Vec::new();
    for (index, (vars, template, expected)) in CASES.iter().enumerate() {
        let vars = super::vars(vars);
        match render(template, &vars, &options) {
            Ok(out) if out.text == *expected => {}
            Ok(out) => failures.push(format!(
                "case {index}: {template:?}\n   expected {expected:?}\n        got {:?}",
                out.text
            )),
            Err(e) => failures.push(format!("case {index}: {template:?}\n   error {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
    assert!(
        CASES.len() >= 200,
        "the table should keep at least 200 cases"
    );
}
