//! Chat messages: one row per message, keyed by (session, seq).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ChatMessages {
    Table,
    SessionId,
    Seq,
    AuthorId,
    AuthorName,
    AuthorRole,
    Text,
    ClientMsgId,
    SentAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ChatMessages::Table)
                    .col(ColumnDef::new(ChatMessages::SessionId).uuid().not_null())
                    .col(ColumnDef::new(ChatMessages::Seq).big_integer().not_null())
                    .col(ColumnDef::new(ChatMessages::AuthorId).uuid().not_null())
                    .col(
                        ColumnDef::new(ChatMessages::AuthorName)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ChatMessages::AuthorRole)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(ChatMessages::Text).text().not_null())
                    .col(
                        ColumnDef::new(ChatMessages::ClientMsgId)
                            .string_len(64)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(ChatMessages::SentAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ChatMessages::DeletedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ChatMessages::SessionId)
                            .col(ChatMessages::Seq),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ChatMessages::Table, ChatMessages::SessionId)
                            .to(Sessions::Table, Sessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ChatMessages::Table).to_owned())
            .await
    }
}
